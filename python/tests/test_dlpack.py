"""Session.output_view() through DLPack: numpy and torch (CPU) alias the session's buffer and
match Session.output(); a stale view refuses; close() waits for exports. The cuda case runs only
where torch sees a GPU and the library has the cuda device: it skips, saying so, elsewhere."""
import gc
import os

import numpy as np
import pytest

import rlx


@pytest.fixture
def session(fixtures):
    w = rlx.Weights(os.path.join(fixtures, "llama", "gqa_tied_f32"))
    m = rlx.Model.llama(w, batch=2, seq=7, all_logits=True, device="cpu")
    s = m.session()
    s.prefill([[96, 88, 16, 65, 13, 19, 6], [41, 87, 78]])
    return s


def test_numpy_from_dlpack_aliases_the_output(session):
    v = session.output_view()
    assert (v.shape, v.dtype, v.device) == ((10, 97), "float32", "cpu")
    assert v.__dlpack_device__() == (1, 0)
    a = np.from_dlpack(v)
    assert a.shape == (10, 97) and a.dtype == np.float32
    assert np.array_equal(a, session.output())
    b = np.from_dlpack(v)  # a second export of the same view
    assert np.shares_memory(a, b) or a.ctypes.data == b.ctypes.data


def test_stale_and_unconsumed_views(session):
    v = session.output_view()
    cap = v.__dlpack__()  # never consumed: its destructor releases it
    assert session._exports == 1
    del cap
    gc.collect()
    assert session._exports == 0
    session.prefill([1, 2, 3])
    with pytest.raises(BufferError, match="stale"):
        v.__dlpack__()
    with pytest.raises(BufferError, match="copy"):
        session.output_view().__dlpack__(copy=True)
    with pytest.raises(BufferError):
        session.output_view().__dlpack__(dl_device=(2, 0))


def test_close_waits_for_exports(session):
    ref = session.output()
    a = np.from_dlpack(session.output_view())
    session.close()  # deferred: a still aliases the buffer
    assert session._h and np.array_equal(a, ref)
    with pytest.raises(ValueError, match="closed"):
        session.prefill([1])
    del a
    gc.collect()
    assert not session._h


def test_torch_cpu(session):
    torch = pytest.importorskip("torch", reason="torch is not installed (optional dependency)")
    t = torch.from_dlpack(session.output_view())
    assert t.dtype == torch.float32 and tuple(t.shape) == (10, 97) and t.device.type == "cpu"
    assert np.array_equal(t.numpy(), session.output())


def test_torch_cuda_without_host_copy(fixtures):
    torch = pytest.importorskip("torch", reason="torch is not installed (optional dependency)")
    if not torch.cuda.is_available():
        pytest.skip("no GPU visible to torch")
    if "cuda" not in rlx.devices():
        pytest.skip("this librlx.so was built without the cuda device")
    d = os.path.join(fixtures, "llama", "gqa_tied_f32")
    with rlx.Weights(d) as w:
        m = rlx.Model.llama(w, batch=2, seq=7, all_logits=True, device="cuda")
        s = m.session()
        stream = torch.cuda.Stream()
        s.prefill([[96, 88, 16, 65, 13, 19, 6], [41, 87, 78]], stream=stream.cuda_stream)
        v = s.output_view()
        assert v.device == "cuda" and v.__dlpack_device__() == (2, torch.cuda.current_device())
        with torch.cuda.stream(stream):
            t = torch.from_dlpack(v)  # same stream as the prefill: no host wait needed
            got = t.float().cpu().numpy()
        assert t.device.type == "cuda" and tuple(t.shape) == (10, 97)
        assert t.data_ptr() == v._data  # aliased, not copied
        assert np.array_equal(got, s.output())  # the host copy: the same bf16 -> f32 widening
        cpu = rlx.run(d, [[96, 88, 16, 65, 13, 19, 6], [41, 87, 78]], all_logits=True, device="cpu")
        cos = (got * cpu).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(cpu, axis=1)
        assert cos.min() >= 0.999  # NUMERICS.md, bf16 device against the CPU reference
