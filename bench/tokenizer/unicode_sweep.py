#!/usr/bin/env python3
"""Where Hugging Face `tokenizers` and utf8proc (what rlx uses) disagree on Unicode, per code point.

    python bench/tokenizer/unicode_sweep.py        (needs `tokenizers`; reads libutf8proc.so.2)

Each code point is put between two letters and run through one `tokenizers` component; the result
is compared with what the same component gives when built on utf8proc's categories, case mapping
and normalization forms, as host/tokenizer/ does. Prints, per component, how many code points
differ and the first few. A diagnostic for docs/tokenizer.md ("Known differences"), not a test:
the differences are characters assigned in recent Unicode versions, where the tables differ.
"""
import ctypes

from tokenizers import Regex
from tokenizers.normalizers import NFC, NFD, NFKC, NFKD, BertNormalizer, Lowercase
from tokenizers.pre_tokenizers import BertPreTokenizer, Digits, Split

lib = ctypes.CDLL("libutf8proc.so.2")
lib.utf8proc_category.restype = ctypes.c_int
lib.utf8proc_tolower.restype = ctypes.c_int32
for f in ("utf8proc_NFD", "utf8proc_NFKC", "utf8proc_NFC", "utf8proc_NFKD"):
    getattr(lib, f).restype = ctypes.c_void_p
    getattr(lib, f).argtypes = [ctypes.c_char_p]
libc = ctypes.CDLL("libc.so.6")
libc.free.argtypes = [ctypes.c_void_p]
CATS = "Cn Lu Ll Lt Lm Lo Mn Mc Me Nd Nl No Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs Zl Zp Cc Cf Cs Co".split()
WS = {9, 10, 11, 12, 13, 0x20, 0x85}


def cat(cp):
    return CATS[lib.utf8proc_category(cp)]


def uform(fn, s):
    p = getattr(lib, fn)(s.encode())
    r = ctypes.string_at(p).decode()
    libc.free(p)
    return r


def is_ws(cp):
    return cp in WS or cat(cp) in ("Zs", "Zl", "Zp")


def main():
    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = Lowercase()
    bert_pre, digits = BertPreTokenizer(), Digits(individual_digits=True)
    re_l, re_n = Split(Regex(r"\p{L}"), "isolated"), Split(Regex(r"\p{N}"), "isolated")
    forms = {"NFC": (NFC(), "utf8proc_NFC"), "NFD": (NFD(), "utf8proc_NFD"), "NFKC": (NFKC(), "utf8proc_NFKC"),
             "NFKD": (NFKD(), "utf8proc_NFKD")}
    diff = {k: [] for k in ["BertNormalizer clean_text", "BertNormalizer strip_accents", "Lowercase",
                            "BertPreTokenizer punctuation", "Digits", "regex \\p{L}", "regex \\p{N}", *forms]}
    for c in range(1, 0x110000):
        if 0xD800 <= c < 0xE000:
            continue
        ch, k = chr(c), cat(c)
        s = "a" + ch + "b"
        if c in (9, 10, 13) or (is_ws(c) and k not in ("Cc", "Cf", "Co")):
            want = "a b"
        elif c == 0xFFFD or k in ("Cc", "Cf", "Co"):
            want = "ab"
        else:
            want = s
        if clean.normalize_str(s) != want:
            diff["BertNormalizer clean_text"].append(c)
        if strip.normalize_str(s) != "".join(x for x in uform("utf8proc_NFD", s) if cat(ord(x)) != "Mn"):
            diff["BertNormalizer strip_accents"].append(c)
        if lower.normalize_str(ch) != ("i\u0307" if c == 0x130 else chr(lib.utf8proc_tolower(c))):
            diff["Lowercase"].append(c)
        for name, (n, fn) in forms.items():
            if n.normalize_str(s) != uform(fn, s):
                diff[name].append(c)
        if not is_ws(c) and k[0] != "C":
            punct = k[0] == "P" or (0x21 <= c <= 0x7E and not ch.isalnum())
            if (len(bert_pre.pre_tokenize_str(s)) == 3) != punct:
                diff["BertPreTokenizer punctuation"].append(c)
        if (len(digits.pre_tokenize_str(s)) == 3) != (k in ("Nd", "Nl", "No")):
            diff["Digits"].append(c)
        if (len(re_l.pre_tokenize_str("1" + ch + "1")) == 3) != (k[0] == "L"):
            diff["regex \\p{L}"].append(c)
        if (len(re_n.pre_tokenize_str("a" + ch + "b")) == 3) != (k[0] == "N"):
            diff["regex \\p{N}"].append(c)
    for name, cps in diff.items():
        print(f"{name:<30} {len(cps):6d} code points differ  {' '.join(f'U+{c:04X}' for c in cps[:12])}")


if __name__ == "__main__":
    main()
