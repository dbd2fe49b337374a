"""rlx: Python bindings for rlx, the GPU-first transformer prefill runtime.

ctypes over librlx.so (no compiler at install time). The library is found through RLX_LIBRARY,
a copy bundled in the package, pkg-config's libdir for rlx, or the system loader, in that order.

    import rlx
    logits = rlx.run("Llama-3.2-1B", [[128000, 791, 6864]])           # numpy [sequences, vocab]
    emb = rlx.embed("bge-small", [[101, 2023, 102]], normalize=True)   # numpy [sequences, hidden]

    w = rlx.Weights("Llama-3.2-1B")
    m = rlx.Model.llama(w, batch=4, seq=2048, device="cuda")
    s = m.session()
    s.prefill([[1, 2, 3], [4, 5]])
    s.output()                      # numpy float32, a host copy
    torch.from_dlpack(s.output_view())   # no copy: the device buffer (valid until the next prefill)

    tok = rlx.Tokenizer("Llama-3.2-1B")   # its tokenizer.json: encode / encode_batch / decode
    out = rlx.generate("Llama-3.2-1B", ["The capital of France is"], max_new_tokens=32)
    out[0].tokens, out[0].finish, out[0].text   # what `rlx generate --prompt ... --out F` writes

Every rlx failure raises RlxError, whose message is rlx_last_error()'s text.
"""

import ctypes
import json
import os
import warnings

import numpy as np

from . import _capi
from ._dlpack import OutputView

__all__ = ["RlxError", "Weights", "Model", "Session", "OutputView", "Tokenizer", "Generated", "Generations", "run",
           "embed", "generate", "eos_token_ids", "sentence_transformers", "version", "devices", "library_path"]

__version__ = "0.1.0"

_lib = _capi.load()


class RlxError(RuntimeError):
    """An rlx call failed. status: the rlx_status value; name: its symbolic name
    ("RLX_ERR_IO"); message: rlx_last_error()'s text, naming the file, tensor, key or bytes."""

    def __init__(self, status, message):
        self.status = int(status)
        self.name = _lib.rlx_status_name(self.status).decode()
        self.message = message
        super().__init__("%s: %s" % (self.name, message))


def _check(status, what=None):
    if status != _capi.RLX_OK:
        msg = _lib.rlx_last_error().decode(errors="replace") or _lib.rlx_status_string(status).decode()
        raise RlxError(status, "%s: %s" % (what, msg) if what else msg)


def _enum(table, value, what):
    if isinstance(value, int) and value in table.values():
        return value
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError("%s: %r is not one of %s" % (what, value, ", ".join(table))) from None


def version():
    """The library's version string, e.g. "0.1.0"."""
    return _lib.rlx_version_string().decode()


def devices():
    """The devices this librlx.so was built with: ["cpu"] or ["cpu", "cuda"] ("simt", the test
    device, lives in the rlx command, not in the library)."""
    return [n for n, k in _capi.DEVICES.items() if k != _capi.DEVICE_AUTO and _lib.rlx_device_compiled(k)]


def library_path():
    """The librlx.so this package loaded."""
    return _lib.rlx_path


def _take_text(ptr):
    """Text the library allocated (free with rlx_free)."""
    try:
        return ctypes.string_at(ptr).decode() if ptr else ""
    finally:
        _lib.rlx_free(ptr)


# ---- weights ---------------------------------------------------------------------------------------

_NUMPY_OF = {_capi.DTYPE_F32: np.float32, _capi.DTYPE_F16: np.float16, _capi.DTYPE_I32: np.int32}


class Weights:
    """A checkpoint: a Hugging Face model directory (config.json + safetensors, sharded or not)
    or one .safetensors file, memory-mapped. w["name"] is a numpy copy of one tensor (bf16 comes
    back as float32)."""

    def __init__(self, path):
        self._h = ctypes.c_void_p()
        path = os.fspath(path)
        opener = _lib.rlx_weights_open if os.path.isdir(path) else _lib.rlx_weights_open_file
        _check(opener(path.encode(), ctypes.byref(self._h)))
        self.path = path

    @classmethod
    def random_llama(cls, config="tiny", seed=0, dtype="bf16"):
        """Seeded random weights for a built-in Llama shape ("tiny", "llama-3.2-1b", ...), with a
        config.json: a model to try without a download."""
        cfg = _capi.LlamaConfig()
        _check(_lib.rlx_llama_builtin_config(config.encode(), ctypes.byref(cfg)))
        dt = _enum({"f32": _capi.DTYPE_F32, "f16": _capi.DTYPE_F16, "bf16": _capi.DTYPE_BF16}, dtype, "dtype")
        self = cls.__new__(cls)
        self._h = ctypes.c_void_p()
        _check(_lib.rlx_llama_random_weights(ctypes.byref(cfg), seed, dt, ctypes.byref(self._h)))
        self.path = None
        return self

    def _handle(self):
        if not self._h:
            raise ValueError("rlx.Weights: closed")
        return self._h

    def close(self):
        if getattr(self, "_h", None):
            _lib.rlx_weights_destroy(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def config_json(self):
        """config.json's text, or None."""
        t = _lib.rlx_weights_config_json(self._handle())
        return t.decode() if t is not None else None

    @property
    def config(self):
        """config.json parsed (a dict), or None."""
        t = self.config_json
        return json.loads(t) if t is not None else None

    def __len__(self):
        return _lib.rlx_weights_count(self._handle())

    def names(self):
        v = _capi.TensorView()
        out = []
        for i in range(len(self)):
            _check(_lib.rlx_weights_at(self._handle(), i, ctypes.byref(v)))
            out.append(v.name.decode())
        return out

    def __contains__(self, name):
        return name in self.names()

    def __getitem__(self, name):
        v = _capi.TensorView()
        status = _lib.rlx_weights_get(self._handle(), name.encode(), ctypes.byref(v))
        if status != _capi.RLX_OK:
            msg = _lib.rlx_last_error().decode(errors="replace")
            raise KeyError(name) if status == _capi.RLX_ERR_MISSING_WEIGHT else RlxError(status, msg)
        shape = tuple(v.shape[i] for i in range(v.ndim))
        n = int(np.prod(shape, dtype=np.int64))
        if v.dtype in _NUMPY_OF:
            raw = ctypes.string_at(v.data, v.nbytes) if n else b""
            return np.frombuffer(raw, dtype=_NUMPY_OF[v.dtype]).reshape(shape).copy()
        if v.dtype == _capi.DTYPE_BF16:
            out = np.empty(shape, dtype=np.float32)
            if n:
                _lib.rlx_convert_to_f32(out.ctypes.data, v.data, v.dtype, n)
            return out
        raise RlxError(_capi.RLX_ERR_UNSUPPORTED, "tensor %s: dtype %s has no numpy reading here" %
                       (name, _lib.rlx_dtype_name(v.dtype).decode()))


# ---- models ----------------------------------------------------------------------------------------

def _build_params(device, fusion, precision, cuda_device, threads):
    bp = _lib.rlx_build_default_params()
    bp.device = _enum(_capi.DEVICES, device, "device")
    if fusion is not None:
        bp.fusion = _enum(_capi.FUSIONS, fusion, "fusion")
    if precision is not None:
        bp.precision = _enum(_capi.PRECISIONS, precision, "precision")
    bp.cuda_device = int(cuda_device)
    bp.threads = int(threads)
    return bp


class Model:
    """A built model: immutable, shareable; run it through sessions (Model.session())."""

    def __init__(self):
        raise TypeError("use rlx.Model.llama(...) or rlx.Model.encoder(...)")

    @classmethod
    def _from_flow(cls, flow, weights, bp, keep):
        self = cls.__new__(cls)
        self._h = ctypes.c_void_p()
        try:
            _check(_lib.rlx_model_build(flow, weights._handle(), ctypes.byref(bp), ctypes.byref(self._h)), "building the model")
        finally:
            _lib.rlx_flow_destroy(flow)
        self._keep = keep
        return self

    @classmethod
    def llama(cls, weights, batch=1, seq=None, all_logits=False, device="auto", fusion=None, precision=None,
              profile=None, cuda_device=0, threads=0, max_context=None):
        """A Llama 3.x causal LM from a checkpoint's config.json, with capacity batch × seq per
        prefill (seq None: max_position_embeddings, at most 2048). Logits of the last position of
        each sequence, or of every position with all_logits. profile: a *.rlx.toml path; None
        takes the checkpoint's llama32.rlx.toml when there is one (as `rlx run` does), else the
        prefill preset; fusion then applies over it. max_context: the positions a sequence may
        reach over a KV cache (prompt + new tokens for generate(); None: seq), at most
        max_position_embeddings."""
        bp = _build_params(device, fusion, precision, cuda_device, threads)
        cfg = _capi.LlamaConfig()
        text = weights.config_json
        if text is None:
            raise RlxError(_capi.RLX_ERR_CONFIG, "the weights have no config.json")
        _check(_lib.rlx_llama_config_parse(text.encode(), b"config.json", ctypes.byref(cfg)), "reading the config")
        rp = _lib.rlx_llama_recipe_default_params()
        if seq is None:
            seq = min(cfg.max_position_embeddings, 2048)
        rp.batch, rp.seq, rp.last_token_logits = int(batch), int(seq), 0 if all_logits else 1
        rp.max_context = 0 if max_context is None else int(max_context)
        flow = ctypes.c_void_p()
        _check(_lib.rlx_llama_flow(ctypes.byref(cfg), ctypes.byref(rp), ctypes.byref(flow)), "assembling the flow")
        prof = _capi.Profile()
        if profile is not None:
            st = _lib.rlx_profile_load(os.fsencode(profile), ctypes.byref(prof))
        else:
            st = _lib.rlx_profile_near(weights._handle(), b"llama32", ctypes.byref(prof))
        if st != _capi.RLX_OK:
            _lib.rlx_flow_destroy(flow)
            _check(st, "profile")
        if fusion is not None:
            prof.fusion_policy = bp.fusion  # the argument wins over the file, as --fusion does
        bp.profile = ctypes.pointer(prof)
        m = cls._from_flow(flow, weights, bp, (prof,))
        m.vocab_size = cfg.vocab_size
        try:  # the end tokens generate() stops on by default; a malformed file is raised there
            m._eos = eos_token_ids(weights)
        except RlxError as e:
            m._eos = e
        return m

    @classmethod
    def encoder(cls, weights, batch=1, seq=None, pool="mean", normalize=False, device="auto", fusion=None,
                precision=None, cuda_device=0, threads=0):
        """A BERT or NomicBERT encoder from a checkpoint's config.json: pooled embeddings
        [sequences, hidden] (pool "cls" or "mean"), or every token's [tokens, hidden] ("none").
        Capacity batch × seq (seq None: max_position_embeddings, at most 2048)."""
        bp = _build_params(device, fusion, precision, cuda_device, threads)
        pool = _enum(_capi.POOLS, pool, "pool")
        cfg = _capi.EncoderConfig()
        _check(_lib.rlx_encoder_config_from_weights(weights._handle(), None, ctypes.byref(cfg)), "reading the config")
        rp = _lib.rlx_encoder_recipe_default_params()
        if seq is None:
            seq = min(cfg.max_position_embeddings, 2048)
        rp.batch, rp.seq, rp.pool = int(batch), int(seq), pool
        rp.normalize = 1 if normalize else 0
        flow = ctypes.c_void_p()
        _check(_lib.rlx_encoder_flow(ctypes.byref(cfg), ctypes.byref(rp), ctypes.byref(flow)), "assembling the flow")
        m = cls._from_flow(flow, weights, bp, ())
        m.vocab_size = cfg.vocab_size
        m.type_vocab_size = cfg.type_vocab_size
        return m

    def _handle(self):
        if not self._h:
            raise ValueError("rlx.Model: closed")
        return self._h

    def close(self):
        if getattr(self, "_h", None):
            _lib.rlx_model_destroy(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def device(self):
        """"cpu" or "cuda" (auto resolved)."""
        return _lib.rlx_device_kind_name(_lib.rlx_model_device(self._handle())).decode()

    @property
    def device_name(self):
        return _lib.rlx_model_device_name(self._handle()).decode()

    @property
    def output_width(self):
        return _lib.rlx_model_output_width(self._handle())

    @property
    def max_tokens(self):
        return _lib.rlx_model_max_tokens(self._handle())

    @property
    def max_sequences(self):
        return _lib.rlx_model_max_sequences(self._handle())

    def plan(self):
        """The kernel plan as text (rlx plan's)."""
        p = ctypes.c_void_p()
        _check(_lib.rlx_model_format_plan(self._handle(), ctypes.byref(p)))
        return _take_text(p)

    def session(self):
        return Session(self)

    @property
    def max_context(self):
        """The positions a sequence may reach over a KV cache (prompt + new tokens)."""
        return _lib.rlx_model_max_context(self._handle())

    def generate(self, prompts, max_new_tokens=32, temperature=0.0, top_k=0, top_p=1.0, seed=0, stop_tokens=(),
                 eos=True, page_size=16, layout="nhd", tokenizer=None, stream=None):
        """rlx_generate (rlx/generate.h) on this model (a Llama built with last-token logits and a
        max_context covering every prompt + max_new_tokens): prefill the prompts into a KV page
        pool, then decode steps until each sequence has max_new_tokens new tokens or produced an
        end token. Greedy (temperature 0) by default; temperature > 0 samples softmax(logits / T)
        over the top_k most likely (0: all), then the top_p nucleus, seeded: sequence i draws
        from its own generator seeded by (seed, i), so a seed gives the same tokens wherever it
        runs. End tokens: the checkpoint's eos_token_id (generation_config.json, else
        config.json) unless eos=False, and stop_tokens. prompts: a list of sequences of ids, or
        of texts when a tokenizer (a Tokenizer, or a path for one) is given; with a tokenizer
        each result's text is its new tokens decoded, special tokens dropped. Returns a
        Generations list of Generated, one per prompt, in order."""
        tok = tokenizer if tokenizer is None or isinstance(tokenizer, Tokenizer) else Tokenizer(tokenizer)
        ids, lens = _prompts(prompts, tok)
        gp = _lib.rlx_generate_default_params()
        gp.max_new_tokens = int(max_new_tokens)
        gp.temperature, gp.top_k, gp.top_p, gp.seed = float(temperature), int(top_k), float(top_p), int(seed)
        gp.page_size = int(page_size)
        gp.layout = _enum(_capi.KV_LAYOUTS, layout, "layout")
        ends = []
        if eos:
            if isinstance(self._eos, RlxError):
                raise self._eos
            ends += list(self._eos)
        for t in stop_tokens:
            if int(t) < 0 or int(t) > 2**31 - 1:
                raise ValueError("stop_tokens: %r is not a token id" % (t,))
            ends.append(int(t))
        stop = (ctypes.c_int32 * max(len(ends), 1))(*ends)
        gp.stop_tokens, gp.n_stop_tokens = stop, len(ends)
        g = ctypes.c_void_p()
        _check(_lib.rlx_generate(self._handle(), ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                                 lens.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), len(lens), ctypes.byref(gp),
                                 ctypes.c_void_p(stream) if stream else None, ctypes.byref(g)), "generate")
        try:
            out = Generations()
            at = 0
            for i, n in enumerate(lens.tolist()):
                k = ctypes.c_int64()
                p = _lib.rlx_generation_tokens(g, i, ctypes.byref(k))
                new = [int(x) for x in p[:k.value]] if k.value else []
                finish = "stop" if _lib.rlx_generation_stopped(g, i) == 1 else "length"
                out.append(Generated(ids[at:at + n].tolist(), new, finish))
                at += n
            st = _capi.GenerationStats()
            _check(_lib.rlx_generation_get_stats(g, ctypes.byref(st)))
            out.stats = {f: getattr(st, f) for f, _ in _capi.GenerationStats._fields_}
        finally:
            _lib.rlx_generation_destroy(g)
        for i, r in enumerate(out if tok is not None else ()):
            try:
                r.text = tok.decode(r.tokens, skip_special_tokens=True)
            except RlxError as e:  # an id the tokenizer lacks (a checkpoint padded past it): no text, as the command
                warnings.warn("rlx generate: sequence %d: no text: %s" % (i, e))
        return out


def eos_token_ids(weights):
    """The end tokens of a checkpoint (rlx_eos_tokens): eos_token_id of generation_config.json, or
    else of config.json, an int or a list; [] when neither names one."""
    cap = 1024
    buf = (ctypes.c_int32 * cap)()
    n = ctypes.c_int64()
    _check(_lib.rlx_eos_tokens(weights._handle(), buf, cap, ctypes.byref(n)), "reading the end tokens")
    return [int(x) for x in buf[:n.value]]


class Generated:
    """One sequence of a generate(): prompt (its ids), tokens (the new ids, the end token last
    when it stopped on one), finish ("stop": an end token; "length": max_new_tokens), text (the
    new tokens decoded, special tokens dropped, when there was a tokenizer; else None)."""

    __slots__ = ("prompt", "tokens", "finish", "text")

    def __init__(self, prompt, tokens, finish, text=None):
        self.prompt, self.tokens, self.finish, self.text = prompt, tokens, finish, text

    def __repr__(self):
        return "Generated(tokens=%r, finish=%r%s)" % (self.tokens, self.finish,
                                                      "" if self.text is None else ", text=%r" % self.text)

    def as_dict(self):
        """The form `rlx generate --out F.json` writes per sequence."""
        d = {"prompt": self.prompt, "tokens": self.tokens, "finish": self.finish}
        if self.text is not None:
            d["text"] = self.text
        return d


class Generations(list):
    """generate()'s results, one Generated per prompt; stats: rlx_generation_stats as a dict
    (first_token_ms, decode_ms, decode_tokens, calls, kv_pages, kv_bytes)."""

    stats = None


def _prompts(prompts, tok):
    """generate()'s prompts, ids or (with a tokenizer) texts, packed: (int32 ids, int64 lengths)."""
    if isinstance(prompts, (str, bytes)):
        prompts = [prompts]
    prompts = list(prompts)
    texts = [i for i, p in enumerate(prompts) if isinstance(p, (str, bytes))]
    if texts:
        if tok is None:
            raise ValueError("prompts: prompt %d is text; pass tokenizer= (a Tokenizer or the model directory)" % texts[0])
        enc = tok.encode_batch([prompts[i] for i in texts])
        for i, e in zip(texts, enc):
            if not e:
                raise ValueError("prompts: prompt %d encodes to no tokens" % i)
            prompts[i] = e
    return _pack(prompts, "prompts")


# ---- tokenizer -------------------------------------------------------------------------------------

def _utf8(text, what):
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        # lone surrogates pass through as the invalid UTF-8 they are: rlx names them, or
        # replaces them with replace_invalid
        return text.encode("utf-8", "surrogatepass")
    raise TypeError("%s: %r is not str or bytes" % (what, type(text).__name__))


class Tokenizer:
    """A Hugging Face tokenizer.json read by rlx (byte-level BPE and WordPiece; see
    docs/tokenizer.md): Tokenizer(path) with a model directory (DIR/tokenizer.json and its
    tokenizer_config.json / special_tokens_map.json) or a tokenizer.json file. The ids are those
    of Hugging Face tokenizers. Immutable: one Tokenizer may be used from many threads."""

    def __init__(self, path):
        self._h = ctypes.c_void_p()
        self.path = os.fspath(path)
        _check(_lib.rlx_tokenizer_open(os.fsencode(self.path), ctypes.byref(self._h)))

    def _handle(self):
        if not self._h:
            raise ValueError("rlx.Tokenizer: closed")
        return self._h

    def close(self):
        if getattr(self, "_h", None):
            _lib.rlx_tokenizer_destroy(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def encode_batch(self, texts, add_special_tokens=True, max_length=None, truncate_left=False,
                     replace_invalid=False, threads=0):
        """Token ids of each text (str, or bytes as UTF-8): a list of lists of ints.
        add_special_tokens: the post-processor's BOS / [CLS] ... [SEP]. max_length: truncate each
        text's ids (specials included) to this many; "model": the tokenizer's model_max_length;
        None: never. truncate_left: drop ids from the start instead of the end. Invalid UTF-8
        raises RlxError naming the text and byte offset, or with replace_invalid becomes U+FFFD
        (as bytes.decode("utf-8", "replace")). threads: 0 = every core, 1 = this thread."""
        data = [_utf8(t, "texts[%d]" % i) for i, t in enumerate(texts)]
        n = len(data)
        if not n:
            return []
        ep = _lib.rlx_tokenizer_encode_default_params()
        ep.add_special_tokens = 1 if add_special_tokens else 0
        if max_length == "model":
            ep.max_length = _capi.TOKENIZER_MODEL_MAX_LENGTH
        elif max_length is not None:
            if int(max_length) <= 0:
                raise ValueError("max_length: %r is not a positive length" % (max_length,))
            ep.max_length = int(max_length)
        ep.truncate_left = 1 if truncate_left else 0
        ep.invalid_utf8 = _capi.TOKENIZER_UTF8_REPLACE if replace_invalid else _capi.TOKENIZER_UTF8_ERROR
        ep.threads = int(threads)
        c_texts = (ctypes.c_char_p * n)(*data)
        c_bytes = (ctypes.c_size_t * n)(*[len(d) for d in data])
        lens = (ctypes.c_int64 * n)()
        ids = ctypes.c_void_p()
        _check(_lib.rlx_tokenizer_encode_batch(self._handle(), c_texts, c_bytes, n, ctypes.byref(ep), ctypes.byref(ids),
                                               lens))
        try:
            flat = ctypes.cast(ids, ctypes.POINTER(ctypes.c_int32))
            out, at = [], 0
            for k in lens:
                out.append([int(x) for x in flat[at:at + k]] if k else [])
                at += k
            return out
        finally:
            _lib.rlx_free(ids)

    def encode(self, text, **kw):
        """Token ids of one text (encode_batch's options): a list of ints."""
        return self.encode_batch([text], **kw)[0]

    def decode(self, ids, skip_special_tokens=False):
        """Text of ids through the tokenizer's decoder (tokenizers' decode): special added tokens
        dropped with skip_special_tokens; byte sequences that are not UTF-8 become U+FFFD. An id
        outside the vocabulary raises RlxError naming it and its position."""
        a = np.asarray(ids)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError("ids: not a list of token ids")
        if a.size and (a.min() < 0 or a.max() > 2**31 - 1):
            raise RlxError(_capi.RLX_ERR_TOKEN_RANGE, "ids: an id outside [0, 2^31)")
        a = np.ascontiguousarray(a, dtype=np.int32)
        text, nbytes = ctypes.c_void_p(), ctypes.c_size_t()
        _check(_lib.rlx_tokenizer_decode(self._handle(), a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), a.size,
                                         1 if skip_special_tokens else 0, ctypes.byref(text), ctypes.byref(nbytes)),
               "decode")
        try:
            return ctypes.string_at(text, nbytes.value).decode("utf-8")
        finally:
            _lib.rlx_free(text)

    def decode_batch(self, sequences, skip_special_tokens=False):
        return [self.decode(s, skip_special_tokens) for s in sequences]

    @property
    def model(self):
        """"bpe" or "wordpiece"."""
        return _capi.TOKENIZER_MODELS[_lib.rlx_tokenizer_model_kind(self._handle())]

    @property
    def vocab_size(self):
        """Ids are in [0, vocab_size): the model's vocabulary and the added tokens."""
        return _lib.rlx_tokenizer_vocab_size(self._handle())

    def __len__(self):
        return self.vocab_size

    @property
    def model_max_length(self):
        """tokenizer_config.json's model_max_length, else tokenizer.json's truncation length, else 0."""
        return _lib.rlx_tokenizer_model_max_length(self._handle())

    def token_to_id(self, token):
        """The id of a token string as the vocabulary spells it (byte-level: "Ġ" for a leading
        space), or None."""
        i = _lib.rlx_tokenizer_token_to_id(self._handle(), token.encode())
        return None if i < 0 else int(i)

    def id_to_token(self, id):
        t = _lib.rlx_tokenizer_id_to_token(self._handle(), int(id)) if 0 <= int(id) < 2**31 else None
        return None if t is None else t.decode("utf-8", "replace")

    def is_special(self, id):
        """Whether id is a special added token (what skip_special_tokens drops)."""
        return bool(0 <= int(id) < 2**31 and _lib.rlx_tokenizer_is_special(self._handle(), int(id)))

    def special_id(self, name):
        """The id of a named special token ("bos", "eos", "unk", "pad", "cls", "sep", "mask") from
        tokenizer_config.json / special_tokens_map.json, or None."""
        i = _lib.rlx_tokenizer_special_id(self._handle(), _enum(_capi.SPECIAL_TOKENS, name, "special token"))
        return None if i < 0 else int(i)

    @property
    def bos_token_id(self):
        return self.special_id("bos")

    @property
    def eos_token_id(self):
        return self.special_id("eos")


# ---- sessions --------------------------------------------------------------------------------------

def _pack(seqs, what):
    """A list of sequences (each a list or 1-D array of ids), or one 1-D sequence, packed:
    (int32 array, int64 lengths)."""
    if isinstance(seqs, np.ndarray) and seqs.ndim == 1 or (len(seqs) and np.isscalar(seqs[0])):
        seqs = [seqs]
    parts = []
    for i, s in enumerate(seqs):
        a = np.asarray(s)
        if a.ndim != 1 or a.size == 0:
            raise ValueError("%s: sequence %d is not a non-empty list of ids" % (what, i))
        if a.dtype.kind not in "iu":
            raise ValueError("%s: sequence %d holds %s, not integer ids" % (what, i, a.dtype))
        if a.min() < 0 or a.max() > 2**31 - 1:
            raise ValueError("%s: sequence %d has an id outside [0, 2^31)" % (what, i))
        parts.append(a.astype(np.int32))
    if not parts:
        raise ValueError("%s: no sequences" % what)
    return np.ascontiguousarray(np.concatenate(parts)), np.array([len(p) for p in parts], dtype=np.int64)


class Session:
    """Per-request state of a model: run prefills, read outputs. Not for concurrent use; make one
    session per thread (a model serves many)."""

    def __init__(self, model):
        self.model = model
        self._h = ctypes.c_void_p()
        self._generation = 0
        self._exports = 0  # DLPack tensors alive that alias this session's output
        self._closing = False
        _check(_lib.rlx_session_create(model._handle(), ctypes.byref(self._h)))

    def _handle(self):
        if not self._h or self._closing:
            raise ValueError("rlx.Session: closed")
        return self._h

    def close(self):
        """Frees the session; while a DLPack export of its output is alive, only once that
        export is released."""
        if getattr(self, "_h", None):
            if self._exports:
                self._closing = True
                return
            _lib.rlx_session_destroy(self._h)
            self._h = None

    def _export_acquired(self):
        self._exports += 1

    def _export_released(self):
        self._exports -= 1
        if not self._exports and self._closing:
            self._closing = False
            self.close()

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def prefill(self, tokens, token_types=None, stream=None):
        """Runs one prefill. tokens: a list of sequences (lists or 1-D arrays of ids), packed one
        after another, or one sequence. token_types: the same shape (encoders with a token-type
        table). stream: a cudaStream_t as an int (e.g. torch.cuda.current_stream().cuda_stream)
        for cuda models; None is the default stream. Device work is only enqueued; output()
        waits for it, output_view() does not. Returns self."""
        ids, lens = _pack(tokens, "tokens")
        p_ids = ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        p_lens = lens.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        st = ctypes.c_void_p(stream) if stream else None
        if token_types is None:
            status = _lib.rlx_session_prefill(self._handle(), p_ids, len(ids), p_lens, len(lens), st)
        else:
            tt, tt_lens = _pack(token_types, "token_types")
            if not np.array_equal(tt_lens, lens):
                raise ValueError("token_types: lengths %s differ from the tokens' %s" % (tt_lens.tolist(), lens.tolist()))
            named = _capi.NamedIds(b"token_type_ids", tt.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), len(tt))
            batch = _capi.PrefillBatch(p_ids, len(ids), p_lens, len(lens), ctypes.pointer(named), 1)
            status = _lib.rlx_session_prefill_ex(self._handle(), ctypes.byref(batch), st)
        self._generation += 1
        _check(status, "prefill")
        self.seq_lens = lens
        return self

    @property
    def output_shape(self):
        r, c = ctypes.c_int64(), ctypes.c_int64()
        _check(_lib.rlx_session_output_shape(self._handle(), ctypes.byref(r), ctypes.byref(c)))
        return (r.value, c.value)

    def output(self):
        """The last prefill's output as a new numpy float32 array [rows, cols] (waits for the
        device)."""
        rows, cols = self.output_shape
        out = np.empty((rows, cols), dtype=np.float32)
        _check(_lib.rlx_session_output_to_host(self._handle(), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                               out.size))
        return out

    def output_view(self):
        """The last prefill's output where it lives, without a copy, for DLPack consumers
        (torch.from_dlpack, numpy.from_dlpack for CPU models). It aliases the session's buffer:
        the next prefill on this session overwrites it (the view then refuses to export)."""
        v = _capi.OutputView()
        _check(_lib.rlx_session_output_view(self._handle(), ctypes.byref(v)))
        return OutputView(self, v, self._generation)

    def synchronize(self):
        """Waits for the last prefill's device work (nothing to wait for on the CPU)."""
        _check(_lib.rlx_session_synchronize(self._handle()))

    def __call__(self, tokens, token_types=None):
        """prefill, then output()."""
        return self.prefill(tokens, token_types).output()


# ---- one-call forms --------------------------------------------------------------------------------

def run(model_dir, tokens, all_logits=False, device="auto", fusion=None, profile=None):
    """What `rlx run --model DIR --tokens ... [--all-logits] --logits-out F` computes: the logits
    as float32 [sequences, vocab] (last positions), or [tokens, vocab] with all_logits. The model
    is built with exactly the prompts' capacity."""
    ids, lens = _pack(tokens, "tokens")
    seqs = np.split(ids, np.cumsum(lens)[:-1])
    with Weights(model_dir) as w:
        with Model.llama(w, batch=len(lens), seq=int(lens.max()), all_logits=all_logits, device=device, fusion=fusion,
                         profile=profile) as m:
            with m.session() as s:
                return s(seqs)


def generate(model_dir, prompts, max_new_tokens=32, temperature=0.0, top_k=0, top_p=1.0, seed=0, stop_tokens=(),
             eos=True, page_size=16, layout="nhd", device="auto", tokenizer=None):
    """What `rlx generate --model DIR (--tokens IDS | --prompt TEXT) ... --max-new-tokens N --out F`
    computes (Model.generate's options): a Generations list, one Generated per prompt. prompts:
    lists of ids and/or texts (str); texts go through the tokenizer, by default the directory's
    tokenizer.json. tokenizer: None = DIR/tokenizer.json when there is one (each result then has
    its text, as the command prints it); a Tokenizer or a path; False = none (ids only). The
    model is built as the command builds it: capacity len(prompts) × the longest prompt, a
    context of the longest prompt + max_new_tokens."""
    model_dir = os.fspath(model_dir)
    tok = None
    if tokenizer is None:
        if os.path.exists(os.path.join(model_dir, "tokenizer.json")):
            try:
                tok = Tokenizer(model_dir)
            except RlxError as e:
                # as the command: ids never needed it, so only text prompts fail on it
                if any(isinstance(p, (str, bytes)) for p in ([prompts] if isinstance(prompts, (str, bytes)) else prompts)):
                    raise
                warnings.warn("rlx.generate: %s; ids only" % e)
    elif tokenizer is not False:
        tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer(tokenizer)
    ids, lens = _prompts(prompts, tok)
    seqs = np.split(ids, np.cumsum(lens)[:-1])
    longest = int(lens.max())
    with Weights(model_dir) as w:
        with Model.llama(w, batch=len(lens), seq=longest, max_context=longest + int(max_new_tokens),
                         device=device) as m:
            return m.generate(seqs, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                              seed=seed, stop_tokens=stop_tokens, eos=eos, page_size=page_size, layout=layout,
                              tokenizer=tok)


def sentence_transformers(model_dir):
    """What a sentence-transformers directory's modules.json (or a lone 1_Pooling/config.json)
    asks for, as `rlx embed` reads it: {"transformer_path", "pool" (None: no Pooling module),
    "pool_source", "normalize"}. A module rlx cannot run raises RlxError naming it."""
    st = _capi.StPipeline()
    _check(_lib.rlx_sentence_transformers_read(os.fsencode(model_dir), ctypes.byref(st)),
           "reading the sentence-transformers modules")
    names = {v: k for k, v in _capi.POOLS.items()}
    return {"transformer_path": st.transformer_path.decode(), "pool": names[st.pool] if st.has_pooling else None,
            "pool_source": st.pool_source.decode() if st.has_pooling else None, "normalize": bool(st.normalize)}


def embed(model_dir, tokens, token_types=None, pool=None, normalize=None, device="auto", ignore_modules=False):
    """What `rlx embed --model DIR --tokens ... --out F` computes: float32 [sequences, hidden]
    (pool "none": [tokens, hidden]). As the command does, a sentence-transformers directory's
    modules.json picks the encoder's folder, the pooling (pool None) and the L2 normalization
    (normalize None), unless ignore_modules; without one, mean pooling and no normalization."""
    ids, lens = _pack(tokens, "tokens")
    seqs = np.split(ids, np.cumsum(lens)[:-1])
    model_dir = os.fspath(model_dir)
    st = {"transformer_path": "", "pool": None, "normalize": False}
    if not ignore_modules:
        st = sentence_transformers(model_dir)
    if pool is None:
        pool = st["pool"] or "mean"
    if normalize is None:
        normalize = st["normalize"]
    weights_dir = os.path.join(model_dir, st["transformer_path"]) if st["transformer_path"] else model_dir
    with Weights(weights_dir) as w:
        with Model.encoder(w, batch=len(lens), seq=int(lens.max()), pool=pool, normalize=normalize, device=device) as m:
            with m.session() as s:
                return s(seqs, token_types)
