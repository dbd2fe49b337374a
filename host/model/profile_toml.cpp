// TOML for profiles: toml++ behind the C interface of profile_toml.h. Nothing thrown crosses
// into C.
//
// toml++ 3.3.0 (Debian bookworm; 3.4.0, its last release, is the same here) is not safe on hostile
// bytes, and its fixes exist only on upstream's master, unreleased:
//  - a non-ASCII character outside a string or comment (`café = 1`, the two bytes "\xc3\xa9")
//    reaches __builtin_unreachable in is_non_ascii_horizontal_whitespace (upstream #305);
//  - preconditions written as TOML_ASSERT_ASSUME fail on bad input (`[` then a newline: #301),
//    aborting through assert() in builds without NDEBUG and becoming __builtin_assume — undefined
//    behaviour — with it.
// So the Debian package is used, configured so that no input reaches either:
//  1. screen(): the bytes are checked to be UTF-8 (TOML requires it), and every non-ASCII
//     character is handed to toml++ as U+FFFD. TOML 1.0 allows non-ASCII only inside strings and
//     comments, where U+FFFD is equally valid, and nowhere else, where U+FFFD is equally a syntax
//     error; U+FFFD itself never enters the broken table (it is above U+FEFF). Line and column
//     stay the same (toml++ counts code points). No profile key or value is non-ASCII, so a key
//     or string that holds one is refused by name; comments keep any text.
//  2. TOML_ASSERT is defined, in every build type, as a check that throws: a violated
//     precondition becomes a refused profile, never an abort or an assumption. (toml++ replaces a
//     user TOML_ASSERT with nothing under NDEBUG and turns TOML_ASSERT_ASSUME into an assumption,
//     hence NDEBUG is lifted while its headers are read.) Exceptions are on so that the parser's
//     functions may throw.
//  3. TOML_MAX_NESTED_VALUES is small: profiles nest nothing, and deep recursion overflows the
//     stack of sanitizer builds (upstream #293).
// tests/fuzz/fuzz-profile.c runs this reader on hostile input; tests/test-profile.c holds the
// probe's cases.
#include <stdexcept>

namespace rlx_toml {
// Thrown by TOML_ASSERT: toml++ found its own precondition broken by the input.
struct invariant_failed {
    const char *expr;
};
[[noreturn]] inline void check_failed(const char *expr) { throw invariant_failed{expr}; }
} // namespace rlx_toml

#ifdef NDEBUG
#define RLX_TOML_NDEBUG_WAS_SET 1
#undef NDEBUG
#endif
#define TOML_EXCEPTIONS 1
#define TOML_ENABLE_FORMATTERS 0
#define TOML_MAX_NESTED_VALUES 16
#define TOML_ASSERT(expr) ((expr) ? static_cast<void>(0) : ::rlx_toml::check_failed(#expr))
#include <toml++/toml.h>
#ifdef RLX_TOML_NDEBUG_WAS_SET
#define NDEBUG 1
#endif

#include "model/profile_toml.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

namespace {

char *dup(std::string_view s) {
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (!p) throw std::bad_alloc();
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
    return p;
}

rlx__toml_kind kind_of(const toml::node &n) {
    switch (n.type()) {
    case toml::node_type::table: return RLX__TOML_TABLE;
    case toml::node_type::array: return RLX__TOML_ARRAY;
    case toml::node_type::string: return RLX__TOML_STRING;
    case toml::node_type::integer: return RLX__TOML_INTEGER;
    case toml::node_type::floating_point: return RLX__TOML_FLOAT;
    case toml::node_type::boolean: return RLX__TOML_BOOLEAN;
    default: return RLX__TOML_DATE_TIME;
    }
}

int clamp_int(toml::source_index v) { return v > 0x7fffffff ? 0x7fffffff : static_cast<int>(v); }

// A message for rlx_last_error, thrown from inside the walk and reported by rlx__toml_read.
struct refused {
    std::string what;
};

// ---- screen: UTF-8 checked, non-ASCII handed on as U+FFFD ---------------------------------------

struct replaced {
    toml::source_index line, col;
    uint32_t cp;
};

// Length of the UTF-8 sequence at p (n bytes left) and its code point, or 0 when it is not
// UTF-8: truncated, a stray continuation byte, overlong, a surrogate, beyond U+10FFFF.
size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp) {
    const unsigned char b = p[0];
    size_t len;
    uint32_t v, min;
    if (b >= 0xc2 && b <= 0xdf) len = 2, v = b & 0x1fu, min = 0x80;
    else if (b >= 0xe0 && b <= 0xef) len = 3, v = b & 0x0fu, min = 0x800;
    else if (b >= 0xf0 && b <= 0xf4) len = 4, v = b & 0x07u, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0u) != 0x80u) return 0;
        v = (v << 6) | (p[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

// The text toml++ reads, and where each non-ASCII character was. A UTF-8 BOM at the start is
// kept (toml++ skips it; U+FEFF is outside the broken table).
void screen(std::string_view in, const char *src, std::string &out, std::vector<replaced> &subs) {
    const auto *p = reinterpret_cast<const unsigned char *>(in.data());
    const size_t n = in.size();
    out.reserve(n + 16);
    size_t i = 0;
    if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        out.append(in.substr(0, 3));
        i = 3;
    }
    toml::source_index line = 1, col = 1;
    while (i < n) {
        if (p[i] < 0x80) {
            out.push_back(static_cast<char>(p[i]));
            if (p[i] == '\n') line++, col = 1;
            else col++;
            i++;
            continue;
        }
        uint32_t cp = 0;
        const size_t len = utf8_decode(p + i, n - i, &cp);
        if (!len) {
            char msg[160];
            std::snprintf(msg, sizeof msg, ":%u:%u: not UTF-8 (byte 0x%02x at offset %zu); a profile is UTF-8 text",
                          static_cast<unsigned>(line), static_cast<unsigned>(col), p[i], i);
            throw refused{src + std::string(msg)};
        }
        subs.push_back({line, col, cp});
        out.append("\xef\xbf\xbd");
        col++;
        i += len;
    }
}

bool ascii(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

// Keys and strings are handed to C as NUL-terminated text, and every profile key and value is
// an ASCII word: an embedded NUL ("fused\u0000junk" would read as "fused") or a non-ASCII
// character is refused here, where the place is known, instead of being cut or mangled.
void check_text(std::string_view s, const char *src, toml::source_index line, toml::source_index col, const char *what) {
    const char *why = s.find('\0') != std::string_view::npos ? "holds a NUL character"
                      : !ascii(s)                            ? "holds a non-ASCII character (profile keys and values are ASCII)"
                                                             : nullptr;
    if (!why) return;
    char msg[224];
    std::snprintf(msg, sizeof msg, ":%u:%u: %s %s", static_cast<unsigned>(line), static_cast<unsigned>(col), what, why);
    throw refused{src + std::string(msg)};
}

// Owns the C strings of the entries until they are handed over.
struct builder {
    const char *src;
    std::vector<rlx__toml_entry> entries;
    ~builder() {
        for (auto &e : entries) {
            std::free(e.table);
            std::free(e.key);
            std::free(e.s);
        }
    }
    void add(const char *table, const toml::key &k, const toml::node &v) {
        entries.emplace_back();
        rlx__toml_entry &e = entries.back();
        std::memset(&e, 0, sizeof e);
        e.table = table ? dup(table) : nullptr;
        e.key = dup(k.str());
        e.kind = kind_of(v);
        e.key_line = clamp_int(k.source().begin.line);
        e.key_col = clamp_int(k.source().begin.column);
        e.line = clamp_int(v.source().begin.line);
        e.col = clamp_int(v.source().begin.column);
        // A key made implicitly (the "a" of "[a.b]") has no place of its own: use the value's.
        if (e.key_line == 0) {
            e.key_line = e.line;
            e.key_col = e.col;
        }
        check_text(k.str(), src, e.key_line, e.key_col, v.is_table() ? "the table name" : "the key");
        if (auto s = v.as_string()) {
            check_text(s->get(), src, e.line, e.col, "the string");
            e.s = dup(s->get());
        }
        if (auto i = v.as_integer()) e.i = i->get();
        if (auto f = v.as_floating_point()) e.f = f->get();
        if (auto b = v.as_boolean()) e.b = b->get() ? 1 : 0;
    }
};

// A duplicate key or table is a syntax error to toml++, whose message names only the last part
// ("cannot redefine existing string 'policy'"). Re-parse the lines before the error — with
// toml++, they are valid TOML — to say which table the key lives in: "key 'fusion.policy'".
std::string redefined_key(std::string_view doc, const toml::parse_error &err) {
    std::string_view d = err.description();
    if (d.find("redefine") == std::string_view::npos) return {};
    const size_t q1 = d.rfind('\'');
    const size_t q0 = q1 == std::string_view::npos || q1 == 0 ? std::string_view::npos : d.rfind('\'', q1 - 1);
    if (q0 == std::string_view::npos) return {};
    const std::string name(d.substr(q0 + 1, q1 - q0 - 1));
    const toml::source_index line = err.source().begin.line;
    size_t cut = 0;
    for (toml::source_index l = 1; l < line && cut < doc.size(); l++) {
        const size_t nl = doc.find('\n', cut);
        cut = nl == std::string_view::npos ? doc.size() : nl + 1;
    }
    toml::table before;
    try {
        before = toml::parse(doc.substr(0, cut));
    } catch (const toml::parse_error &) {
        return {};
    } catch (const rlx_toml::invariant_failed &) {
        return {};
    }
    std::string best;
    toml::source_index best_line = 0;
    for (auto &&[k, v] : before) {
        if (k.str() == name && v.is_table()) return "table '" + name + "'";
        if (k.str() == name && k.source().begin.line >= best_line) {
            best = "key '" + name + "'";
            best_line = k.source().begin.line;
        }
        if (const toml::table *t = v.as_table())
            for (auto &&[k2, v2] : *t)
                if (k2.str() == name && k2.source().begin.line >= best_line) {
                    best = "key '" + std::string(k.str()) + "." + name + "'";
                    best_line = k2.source().begin.line;
                }
    }
    return best;
}

rlx_status syntax_error(const char *src, const std::string &doc, const std::vector<replaced> &subs,
                        const toml::parse_error &err) {
    const toml::source_index line = err.source().begin.line, col = err.source().begin.column;
    for (const replaced &r : subs)
        if (r.line == line && r.col == col)
            return rlx__fail(RLX_ERR_PROFILE,
                             "%s:%u:%u: TOML syntax error: character U+%04X outside a string or comment (TOML allows "
                             "non-ASCII characters only inside strings and comments)",
                             src, static_cast<unsigned>(line), static_cast<unsigned>(col), static_cast<unsigned>(r.cp));
    const std::string what = redefined_key(doc, err);
    return rlx__fail(RLX_ERR_PROFILE, "%s:%u:%u: %s%sTOML syntax error: %.*s%s", src, static_cast<unsigned>(line),
                     static_cast<unsigned>(col), what.c_str(), what.empty() ? "" : ": defined twice (",
                     static_cast<int>(err.description().size()), err.description().data(), what.empty() ? "" : ")");
}

} // namespace

extern "C" rlx_status rlx__toml_read(const char *text, size_t len, const char *source, rlx__toml_doc *out) {
    out->e = nullptr;
    out->n = 0;
    const char *src = source ? source : "<toml>";
    try {
        std::string doc;
        std::vector<replaced> subs;
        screen(std::string_view(text, len), src, doc, subs);
        toml::table root;
        try {
            root = toml::parse(std::string_view(doc), std::string_view(src));
        } catch (const toml::parse_error &err) {
            return syntax_error(src, doc, subs, err);
        }
        builder b{src, {}};
        for (auto &&[k, v] : root) {
            b.add(nullptr, k, v);
            if (const toml::table *t = v.as_table())
                for (auto &&[k2, v2] : *t) b.add(std::string(k.str()).c_str(), k2, v2);
        }
        // toml++ keeps keys sorted by name; report in the order the file is written.
        std::stable_sort(b.entries.begin(), b.entries.end(), [](const rlx__toml_entry &x, const rlx__toml_entry &y) {
            return x.key_line != y.key_line ? x.key_line < y.key_line : x.key_col < y.key_col;
        });
        auto *arr = static_cast<rlx__toml_entry *>(std::malloc((b.entries.size() + 1) * sizeof(rlx__toml_entry)));
        if (!arr) throw std::bad_alloc();
        if (!b.entries.empty()) std::memcpy(arr, b.entries.data(), b.entries.size() * sizeof(rlx__toml_entry));
        out->e = arr;
        out->n = b.entries.size();
        b.entries.clear(); // ownership of the strings moved to arr
        return RLX_OK;
    } catch (const refused &r) {
        return rlx__fail(RLX_ERR_PROFILE, "%s", r.what.c_str());
    } catch (const rlx_toml::invariant_failed &f) {
        return rlx__fail(RLX_ERR_PROFILE, "%s: TOML syntax error: the TOML reader refused the input (its check '%s' failed)", src,
                         f.expr);
    } catch (const std::bad_alloc &) {
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "%s: out of host memory reading the profile", src);
    } catch (...) {
        return rlx__fail(RLX_ERR_INTERNAL, "%s: unexpected failure in the TOML reader", src);
    }
}

extern "C" void rlx__toml_free(rlx__toml_doc *doc) {
    if (!doc) return;
    for (size_t i = 0; i < doc->n; i++) {
        std::free(doc->e[i].table);
        std::free(doc->e[i].key);
        std::free(doc->e[i].s);
    }
    std::free(doc->e);
    doc->e = nullptr;
    doc->n = 0;
}

extern "C" const char *rlx__toml_kind_name(rlx__toml_kind kind) {
    switch (kind) {
    case RLX__TOML_TABLE: return "a table";
    case RLX__TOML_ARRAY: return "an array";
    case RLX__TOML_STRING: return "a string";
    case RLX__TOML_INTEGER: return "an integer";
    case RLX__TOML_FLOAT: return "a float";
    case RLX__TOML_BOOLEAN: return "a boolean";
    case RLX__TOML_DATE_TIME: return "a date/time";
    }
    return "a value";
}
