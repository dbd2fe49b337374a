"""DLPack export of a session's output (rlx_session_output_view), without a copy.

The DLPack C structs (dlpack.h, v0.8 ABI, the unversioned "dltensor" capsule every consumer
takes: torch.from_dlpack, numpy.from_dlpack, cupy, jax) are declared with ctypes. The capsule
owns a DLManagedTensor whose manager_ctx keeps the Python session alive; its deleter (called by
the consumer when its tensor dies, or by the capsule's destructor if nobody consumed it) lets go.
"""

import ctypes

kDLCPU, kDLCUDA = 1, 2
kDLFloat, kDLBfloat = 2, 4


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32), ("dtype", DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]

# address of each exported DLManagedTensor -> what must live until its deleter runs
_live = {}


def _release(addr):
    entry = _live.pop(addr, None)
    if entry is not None:
        entry[-1]._export_released()


@_DELETER
def _deleter(addr):
    _release(addr)


# The capsule's name is stored by pointer, not copied: it must outlive every capsule.
_NAME = ctypes.create_string_buffer(b"dltensor")
_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_void_p, _DESTRUCTOR]
_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.c_void_p, ctypes.c_void_p]


@_DESTRUCTOR
def _capsule_destructor(capsule):
    # Still named "dltensor": no consumer took it (a consumer renames it "used_dltensor" and
    # calls the deleter itself), so the producer releases the tensor.
    if _capsule_is_valid(capsule, ctypes.addressof(_NAME)):
        _release(_capsule_pointer(capsule, ctypes.addressof(_NAME)))


# rlx_dtype -> (DLPack code, bits, name); rlx_device_kind -> DLPack device type
_DTYPES = {0: (kDLFloat, 32, "float32"), 2: (kDLBfloat, 16, "bfloat16")}
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "simt"}


class OutputView:
    """A session's last output where it lives: shape, dtype ("float32" or "bfloat16"), device
    ("cpu", "cuda" or "simt": host memory but for cuda) and the DLPack protocol
    (__dlpack__, __dlpack_device__), so torch.from_dlpack(view) aliases it without a copy.

    The memory is the session's: the next prefill on it overwrites what an exported tensor
    shows (clone the tensor to keep it), and this view then refuses to export again. The
    session stays alive while an exported tensor does, even through Session.close()."""

    def __init__(self, session, view, generation):
        self._session = session
        self._generation = generation
        self._data = view.data
        self._ordinal = view.device_ordinal
        self._stream = view.stream or 0
        self.shape = (view.rows, view.cols)
        if view.dtype not in _DTYPES:
            raise BufferError("rlx output dtype %d has no DLPack form here" % view.dtype)
        self._code, self._bits, self.dtype = _DTYPES[view.dtype]
        self.device = _DEVICE_NAMES.get(view.device, "?")

    def __repr__(self):
        return "rlx.OutputView(shape=%s, dtype=%s, device=%s)" % (self.shape, self.dtype, self.device)

    def __dlpack_device__(self):
        if self.device == "cuda":
            return (kDLCUDA, self._ordinal)
        return (kDLCPU, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        s = self._session
        if not s._h or s._closing or s._generation != self._generation:
            raise BufferError("rlx: this output view is stale: the session ran another prefill or was closed")
        if copy:
            raise BufferError("rlx: output views export without a copy; Session.output() makes a host copy")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError("rlx: the output lives on %s, not on %s" % (self.__dlpack_device__(), tuple(dl_device)))
        if self.device == "cuda" and stream != -1:
            # The consumer will read on `stream` (None and 1: the legacy default stream, 2: the
            # per-thread default, else a cudaStream_t). Unless that is the stream the prefill was
            # enqueued on, wait for the prefill here: correct, if not the cheapest (an event
            # wait would not block the host, but the library exposes no events).
            consumer = 1 if stream in (None, 0) else stream
            producer = 1 if self._stream == 0 else self._stream
            if consumer != producer:
                s.synchronize()
        rows, cols = self.shape
        shape = (ctypes.c_int64 * 2)(rows, cols)
        strides = (ctypes.c_int64 * 2)(cols, 1)
        m = DLManagedTensor()
        dev_type, dev_id = self.__dlpack_device__()
        m.dl_tensor = DLTensor(self._data, DLDevice(dev_type, dev_id), 2, DLDataType(self._code, self._bits, 1),
                               ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)),
                               ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64)), 0)
        m.deleter = _deleter
        addr = ctypes.addressof(m)
        m.manager_ctx = addr
        _live[addr] = (m, shape, strides, s)
        s._export_acquired()
        try:
            return _capsule_new(addr, ctypes.addressof(_NAME), _capsule_destructor)
        except BaseException:
            _release(addr)
            raise
