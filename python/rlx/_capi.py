"""ctypes declarations of rlx's C API (include/rlx/*.h) and the loading of librlx.so.

Standard library only (no numpy), so the ABI check (tests/package/check_python_abi.py) can import
it anywhere. Every struct below mirrors one in the public headers field by field; that check
compiles a C program printing sizeof/offsetof of each and compares them with these, so a header
change that would break this mirror fails the build's test suite, not a user's process.
"""

import ctypes
import ctypes.util
import glob
import os
import shutil
import subprocess

# The ABI this module was written against: librlx.so.0.1 (the SONAME carries major.minor while
# the major version is 0).
ABI_MAJOR, ABI_MINOR = 0, 1
SONAME = "librlx.so.%d.%d" % (ABI_MAJOR, ABI_MINOR)

c_status = ctypes.c_int
c_enum = ctypes.c_int  # C enums with non-negative values: 4 bytes, passed as an int
RLX_MAX_DIMS = 8
RLX_PROFILE_SOURCE_MAX = 1024

# rlx_status values the package raises itself (RLX_STATUS_MAP in rlx.h); the library names them.
RLX_OK = 0
RLX_ERR_INVALID_ARGUMENT = 1
RLX_ERR_UNSUPPORTED = 4
RLX_ERR_CONFIG = 5
RLX_ERR_MISSING_WEIGHT = 6
RLX_ERR_TOKEN_RANGE = 13

# rlx_dtype
DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_I32 = 0, 1, 2, 3
# rlx_device_kind
DEVICE_AUTO, DEVICE_CPU, DEVICE_CUDA, DEVICE_SIMT = 0, 1, 2, 3
DEVICES = {"auto": DEVICE_AUTO, "cpu": DEVICE_CPU, "cuda": DEVICE_CUDA, "simt": DEVICE_SIMT}
# rlx_fusion_policy, rlx_precision
FUSIONS = {"fused": 0, "none": 1}
PRECISIONS = {"bf16": 0, "f32": 1, "f16": 2}
# rlx_pool
POOLS = {"none": 0, "cls": 1, "mean": 2}
# rlx_kv_layout (kv.h)
KV_LAYOUTS = {"nhd": 0, "hnd": 1}
# tokenizer.h: rlx_tokenizer_model, rlx_tokenizer_utf8, RLX_TOKENIZER_MODEL_MAX_LENGTH, rlx_special_token
TOKENIZER_MODELS = {0: "bpe", 1: "wordpiece"}
TOKENIZER_UTF8_ERROR, TOKENIZER_UTF8_REPLACE = 0, 1
TOKENIZER_MODEL_MAX_LENGTH = -1
SPECIAL_TOKENS = {"bos": 0, "eos": 1, "unk": 2, "pad": 3, "cls": 4, "sep": 5, "mask": 6}


class RopeParams(ctypes.Structure):  # rlx_rope_params (llama.h)
    _fields_ = [("head_dim", ctypes.c_int64), ("max_positions", ctypes.c_int64), ("theta", ctypes.c_double),
                ("scaling", c_enum), ("factor", ctypes.c_double), ("low_freq_factor", ctypes.c_double),
                ("high_freq_factor", ctypes.c_double), ("original_max_positions", ctypes.c_int64)]


class LlamaConfig(ctypes.Structure):  # rlx_llama_config (llama.h)
    _fields_ = [("vocab_size", ctypes.c_int64), ("hidden_size", ctypes.c_int64),
                ("intermediate_size", ctypes.c_int64), ("num_hidden_layers", ctypes.c_int64),
                ("num_attention_heads", ctypes.c_int64), ("num_key_value_heads", ctypes.c_int64),
                ("head_dim", ctypes.c_int64), ("rms_norm_eps", ctypes.c_double),
                ("max_position_embeddings", ctypes.c_int64), ("tie_word_embeddings", ctypes.c_int),
                ("rope", RopeParams)]


class LlamaRecipeParams(ctypes.Structure):  # rlx_llama_recipe_params (flow.h)
    _fields_ = [("batch", ctypes.c_int64), ("seq", ctypes.c_int64), ("last_token_logits", ctypes.c_int),
                ("composed_layers", ctypes.c_int), ("layer", ctypes.c_void_p), ("layer_user", ctypes.c_void_p),
                ("before_layers", ctypes.c_void_p), ("after_layers", ctypes.c_void_p), ("patch", ctypes.c_void_p),
                ("hooks_user", ctypes.c_void_p), ("max_context", ctypes.c_int64)]


class Profile(ctypes.Structure):  # struct rlx_profile (profile.h)
    _fields_ = [("source", ctypes.c_char * RLX_PROFILE_SOURCE_MAX), ("fusion_policy", c_enum), ("target", c_enum),
                ("assert_clean", ctypes.c_int), ("dce", ctypes.c_int), ("constant_folding", ctypes.c_int),
                ("verbose", ctypes.c_int), ("compute", c_enum), ("mixed", c_enum),
                ("attention_block_q", ctypes.c_int), ("gemm_workspace_mb", ctypes.c_int), ("cuda_graphs", ctypes.c_int),
                ("gemm_autotune", ctypes.c_int), ("prune_last_layer", ctypes.c_int)]


class BuildParams(ctypes.Structure):  # rlx_build_params (flow.h)
    _fields_ = [("device", c_enum), ("cuda_device", ctypes.c_int), ("threads", ctypes.c_int), ("fusion", c_enum),
                ("precision", c_enum), ("profile", ctypes.POINTER(Profile)), ("plan_only", ctypes.c_int),
                ("comm", ctypes.c_void_p),  # rlx_comm * (dist.h); the package builds single-device models
                ("progress", ctypes.c_void_p), ("progress_user", ctypes.c_void_p)]  # load progress callback (unused here)


class TensorView(ctypes.Structure):  # rlx_tensor_view (weights.h)
    _fields_ = [("name", ctypes.c_char_p), ("dtype", c_enum), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_int64 * RLX_MAX_DIMS), ("data", ctypes.c_void_p), ("nbytes", ctypes.c_size_t),
                ("file", ctypes.c_char_p)]


class EncoderConfig(ctypes.Structure):  # rlx_encoder_config (encoder.h)
    _fields_ = [("arch", c_enum), ("vocab_size", ctypes.c_int64), ("hidden_size", ctypes.c_int64),
                ("intermediate_size", ctypes.c_int64), ("num_hidden_layers", ctypes.c_int64),
                ("num_attention_heads", ctypes.c_int64), ("type_vocab_size", ctypes.c_int64),
                ("max_position_embeddings", ctypes.c_int64), ("layer_norm_eps", ctypes.c_double),
                ("rope_theta", ctypes.c_double), ("qkv_bias", ctypes.c_int), ("mlp_fc1_bias", ctypes.c_int),
                ("mlp_fc2_bias", ctypes.c_int), ("prefix", ctypes.c_char * 64)]


class StPipeline(ctypes.Structure):  # rlx_st_pipeline (encoder.h)
    _fields_ = [("has_modules", ctypes.c_int), ("transformer_path", ctypes.c_char * 256), ("has_pooling", ctypes.c_int),
                ("pool", c_enum), ("pool_source", ctypes.c_char * 256), ("normalize", ctypes.c_int)]


class EncoderRecipeParams(ctypes.Structure):  # rlx_encoder_recipe_params (encoder.h)
    _fields_ = [("batch", ctypes.c_int64), ("seq", ctypes.c_int64), ("pool", c_enum), ("normalize", ctypes.c_int)]


class NamedIds(ctypes.Structure):  # rlx_named_ids (encoder.h)
    _fields_ = [("name", ctypes.c_char_p), ("ids", ctypes.POINTER(ctypes.c_int32)), ("n", ctypes.c_int64)]


class PrefillBatch(ctypes.Structure):  # rlx_prefill_batch (encoder.h)
    _fields_ = [("tokens", ctypes.POINTER(ctypes.c_int32)), ("n_tokens", ctypes.c_int64),
                ("seq_lens", ctypes.POINTER(ctypes.c_int64)), ("n_seqs", ctypes.c_int64),
                ("inputs", ctypes.POINTER(NamedIds)), ("n_inputs", ctypes.c_int64)]


class OutputView(ctypes.Structure):  # rlx_output_view (flow.h)
    _fields_ = [("data", ctypes.c_void_p), ("dtype", c_enum), ("rows", ctypes.c_int64), ("cols", ctypes.c_int64),
                ("device", c_enum), ("device_ordinal", ctypes.c_int), ("stream", ctypes.c_void_p)]


class GenerateParams(ctypes.Structure):  # rlx_generate_params (generate.h)
    _fields_ = [("max_new_tokens", ctypes.c_int64), ("temperature", ctypes.c_double), ("top_k", ctypes.c_int64),
                ("top_p", ctypes.c_double), ("seed", ctypes.c_uint64), ("stop_tokens", ctypes.POINTER(ctypes.c_int32)),
                ("n_stop_tokens", ctypes.c_int64), ("page_size", ctypes.c_int64), ("layout", c_enum)]


class GenerationStats(ctypes.Structure):  # rlx_generation_stats (generate.h)
    _fields_ = [("first_token_ms", ctypes.c_double), ("decode_ms", ctypes.c_double), ("decode_tokens", ctypes.c_int64),
                ("calls", ctypes.c_int64), ("kv_pages", ctypes.c_int64), ("kv_bytes", ctypes.c_size_t)]


class TokenizerEncodeParams(ctypes.Structure):  # rlx_tokenizer_encode_params (tokenizer.h)
    _fields_ = [("add_special_tokens", ctypes.c_int), ("max_length", ctypes.c_int64), ("truncate_left", ctypes.c_int),
                ("invalid_utf8", c_enum), ("threads", ctypes.c_int)]


# Constants the ABI check holds to the headers: C name -> value here.
CONSTANTS = {"RLX_OK": RLX_OK, "RLX_ERR_INVALID_ARGUMENT": RLX_ERR_INVALID_ARGUMENT,
             "RLX_ERR_UNSUPPORTED": RLX_ERR_UNSUPPORTED, "RLX_ERR_CONFIG": RLX_ERR_CONFIG,
             "RLX_ERR_MISSING_WEIGHT": RLX_ERR_MISSING_WEIGHT, "RLX_ERR_TOKEN_RANGE": RLX_ERR_TOKEN_RANGE, "RLX_MAX_DIMS": RLX_MAX_DIMS, "RLX_PROFILE_SOURCE_MAX": RLX_PROFILE_SOURCE_MAX,
             "RLX_DTYPE_F32": DTYPE_F32, "RLX_DTYPE_F16": DTYPE_F16, "RLX_DTYPE_BF16": DTYPE_BF16,
             "RLX_DTYPE_I32": DTYPE_I32, "RLX_DEVICE_AUTO": DEVICE_AUTO, "RLX_DEVICE_CPU": DEVICE_CPU,
             "RLX_DEVICE_CUDA": DEVICE_CUDA, "RLX_DEVICE_SIMT": DEVICE_SIMT, "RLX_FUSION_FUSED": FUSIONS["fused"],
             "RLX_FUSION_NONE": FUSIONS["none"], "RLX_PRECISION_BF16": PRECISIONS["bf16"],
             "RLX_PRECISION_F32": PRECISIONS["f32"], "RLX_PRECISION_F16": PRECISIONS["f16"],
             "RLX_POOL_NONE": POOLS["none"], "RLX_POOL_CLS": POOLS["cls"], "RLX_POOL_MEAN": POOLS["mean"],
             "RLX_VERSION_MAJOR": ABI_MAJOR, "RLX_VERSION_MINOR": ABI_MINOR,
             "RLX_KV_LAYOUT_NHD": KV_LAYOUTS["nhd"], "RLX_KV_LAYOUT_HND": KV_LAYOUTS["hnd"],
             "RLX_TOKENIZER_BPE": 0, "RLX_TOKENIZER_WORDPIECE": 1,
             "RLX_TOKENIZER_UTF8_ERROR": TOKENIZER_UTF8_ERROR, "RLX_TOKENIZER_UTF8_REPLACE": TOKENIZER_UTF8_REPLACE,
             "RLX_TOKENIZER_MODEL_MAX_LENGTH": TOKENIZER_MODEL_MAX_LENGTH,
             "RLX_SPECIAL_BOS": SPECIAL_TOKENS["bos"], "RLX_SPECIAL_EOS": SPECIAL_TOKENS["eos"],
             "RLX_SPECIAL_UNK": SPECIAL_TOKENS["unk"], "RLX_SPECIAL_PAD": SPECIAL_TOKENS["pad"],
             "RLX_SPECIAL_CLS": SPECIAL_TOKENS["cls"], "RLX_SPECIAL_SEP": SPECIAL_TOKENS["sep"],
             "RLX_SPECIAL_MASK": SPECIAL_TOKENS["mask"]}

# The structs the ABI check holds to the headers: ctypes class -> C type name.
STRUCTS = {RopeParams: "rlx_rope_params", LlamaConfig: "rlx_llama_config", LlamaRecipeParams: "rlx_llama_recipe_params",
           Profile: "rlx_profile", BuildParams: "rlx_build_params", TensorView: "rlx_tensor_view",
           EncoderConfig: "rlx_encoder_config", StPipeline: "rlx_st_pipeline", EncoderRecipeParams: "rlx_encoder_recipe_params",
           NamedIds: "rlx_named_ids", PrefillBatch: "rlx_prefill_batch", OutputView: "rlx_output_view",
           GenerateParams: "rlx_generate_params", GenerationStats: "rlx_generation_stats",
           TokenizerEncodeParams: "rlx_tokenizer_encode_params"}

P = ctypes.POINTER
vp = ctypes.c_void_p
i64 = ctypes.c_int64
# name: (restype, argtypes). Handles (rlx_weights *, rlx_flow *, ...) are opaque void pointers.
FUNCTIONS = {
    "rlx_status_string": (ctypes.c_char_p, [c_status]),
    "rlx_status_name": (ctypes.c_char_p, [c_status]),
    "rlx_last_error": (ctypes.c_char_p, []),
    "rlx_clear_error": (None, []),
    "rlx_version": (ctypes.c_uint, []),
    "rlx_version_string": (ctypes.c_char_p, []),
    "rlx_dtype_name": (ctypes.c_char_p, [c_enum]),
    "rlx_device_kind_name": (ctypes.c_char_p, [c_enum]),
    "rlx_device_compiled": (ctypes.c_int, [c_enum]),
    "rlx_free": (None, [vp]),
    # weights.h
    "rlx_weights_open": (c_status, [ctypes.c_char_p, P(vp)]),
    "rlx_weights_open_file": (c_status, [ctypes.c_char_p, P(vp)]),
    "rlx_weights_destroy": (None, [vp]),
    "rlx_weights_get": (c_status, [vp, ctypes.c_char_p, P(TensorView)]),
    "rlx_weights_count": (ctypes.c_size_t, [vp]),
    "rlx_weights_at": (c_status, [vp, ctypes.c_size_t, P(TensorView)]),
    "rlx_weights_config_json": (ctypes.c_char_p, [vp]),
    "rlx_weights_dir": (ctypes.c_char_p, [vp]),
    "rlx_convert_to_f32": (None, [vp, vp, c_enum, ctypes.c_size_t]),
    # llama.h, flow.h
    "rlx_llama_config_parse": (c_status, [ctypes.c_char_p, ctypes.c_char_p, P(LlamaConfig)]),
    "rlx_llama_builtin_config": (c_status, [ctypes.c_char_p, P(LlamaConfig)]),
    "rlx_llama_random_weights": (c_status, [P(LlamaConfig), ctypes.c_uint64, c_enum, P(vp)]),
    "rlx_llama_recipe_default_params": (LlamaRecipeParams, []),
    "rlx_llama_flow": (c_status, [P(LlamaConfig), P(LlamaRecipeParams), P(vp)]),
    "rlx_flow_destroy": (None, [vp]),
    "rlx_build_default_params": (BuildParams, []),
    "rlx_model_build": (c_status, [vp, vp, P(BuildParams), P(vp)]),
    "rlx_model_destroy": (None, [vp]),
    "rlx_model_device": (c_enum, [vp]),
    "rlx_model_device_name": (ctypes.c_char_p, [vp]),
    "rlx_model_output_width": (i64, [vp]),
    "rlx_model_max_tokens": (i64, [vp]),
    "rlx_model_max_sequences": (i64, [vp]),
    "rlx_model_output_per_sequence": (ctypes.c_int, [vp]),
    "rlx_model_format_plan": (c_status, [vp, P(vp)]),
    "rlx_session_create": (c_status, [vp, P(vp)]),
    "rlx_session_destroy": (None, [vp]),
    "rlx_session_prefill": (c_status, [vp, P(ctypes.c_int32), i64, P(i64), i64, vp]),
    "rlx_session_output_shape": (c_status, [vp, P(i64), P(i64)]),
    "rlx_session_output_to_host": (c_status, [vp, P(ctypes.c_float), ctypes.c_size_t]),
    "rlx_session_output_view": (c_status, [vp, P(OutputView)]),
    "rlx_session_synchronize": (c_status, [vp]),
    # profile.h
    "rlx_profile_load": (c_status, [ctypes.c_char_p, P(Profile)]),
    "rlx_profile_near": (c_status, [vp, ctypes.c_char_p, P(Profile)]),
    # encoder.h
    "rlx_encoder_config_from_weights": (c_status, [vp, ctypes.c_char_p, P(EncoderConfig)]),
    "rlx_sentence_transformers_read": (c_status, [ctypes.c_char_p, P(StPipeline)]),
    "rlx_encoder_recipe_default_params": (EncoderRecipeParams, []),
    "rlx_encoder_flow": (c_status, [P(EncoderConfig), P(EncoderRecipeParams), P(vp)]),
    "rlx_session_prefill_ex": (c_status, [vp, P(PrefillBatch), vp]),
    # kv.h, generate.h
    "rlx_model_max_context": (i64, [vp]),
    "rlx_generate_default_params": (GenerateParams, []),
    "rlx_generate": (c_status, [vp, P(ctypes.c_int32), P(i64), i64, P(GenerateParams), vp, P(vp)]),
    "rlx_generation_destroy": (None, [vp]),
    "rlx_generation_count": (i64, [vp]),
    "rlx_generation_tokens": (P(ctypes.c_int32), [vp, i64, P(i64)]),
    "rlx_generation_stopped": (ctypes.c_int, [vp, i64]),
    "rlx_generation_get_stats": (c_status, [vp, P(GenerationStats)]),
    "rlx_eos_tokens": (c_status, [vp, P(ctypes.c_int32), i64, P(i64)]),
    # tokenizer.h
    "rlx_tokenizer_open": (c_status, [ctypes.c_char_p, P(vp)]),
    "rlx_tokenizer_destroy": (None, [vp]),
    "rlx_tokenizer_encode_default_params": (TokenizerEncodeParams, []),
    "rlx_tokenizer_encode_batch": (c_status, [vp, P(ctypes.c_char_p), P(ctypes.c_size_t), i64, P(TokenizerEncodeParams),
                                              P(vp), P(i64)]),
    "rlx_tokenizer_decode": (c_status, [vp, P(ctypes.c_int32), i64, ctypes.c_int, P(vp), P(ctypes.c_size_t)]),
    "rlx_tokenizer_model_kind": (c_enum, [vp]),
    "rlx_tokenizer_vocab_size": (i64, [vp]),
    "rlx_tokenizer_model_max_length": (i64, [vp]),
    "rlx_tokenizer_token_to_id": (ctypes.c_int32, [vp, ctypes.c_char_p]),
    "rlx_tokenizer_id_to_token": (ctypes.c_char_p, [vp, ctypes.c_int32]),
    "rlx_tokenizer_is_special": (ctypes.c_int, [vp, ctypes.c_int32]),
    "rlx_tokenizer_special_id": (ctypes.c_int32, [vp, c_enum]),
}


def _candidates():
    """Where librlx.so may be, in the order tried."""
    env = os.environ.get("RLX_LIBRARY")
    if env:
        yield env, "RLX_LIBRARY"
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lib")
    for name in (SONAME, "librlx.so"):
        path = os.path.join(here, name)
        if os.path.exists(path):
            yield path, "bundled with the package"
    pc = shutil.which("pkg-config")
    if pc:
        try:
            libdir = subprocess.run([pc, "--variable=libdir", "rlx"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            libdir = ""
        if libdir:
            for name in (SONAME, "librlx.so"):
                path = os.path.join(libdir, name)
                if os.path.exists(path):
                    yield path, "pkg-config rlx"
    yield SONAME, "the system loader (ld.so.conf, LD_LIBRARY_PATH)"
    found = ctypes.util.find_library("rlx")
    if found:
        yield found, "ctypes.util.find_library"


def load():
    """Loads librlx.so (RLX_LIBRARY, else the copy bundled in the package, else pkg-config's
    libdir, else the system loader), declares every function and checks the ABI."""
    tried = []
    for path, how in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s): %s" % (path, how, e))
            continue
        missing = [n for n in FUNCTIONS if not hasattr(lib, n)]
        if missing:
            raise ImportError("rlx: %s lacks %s: it is older than this package" % (path, ", ".join(missing)))
        for name, (res, args) in FUNCTIONS.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        v = lib.rlx_version()
        if (v // 10000, v // 100 % 100) != (ABI_MAJOR, ABI_MINOR):
            raise ImportError("rlx: %s is version %s; this package needs the %d.%d ABI" %
                              (path, lib.rlx_version_string().decode(), ABI_MAJOR, ABI_MINOR))
        lib.rlx_path = path
        return lib
    raise ImportError("rlx: librlx.so not found; set RLX_LIBRARY to its path, install rlx where pkg-config or the "
                      "loader finds it, or build the package with the library bundled. Tried:\n  " + "\n  ".join(tried))
