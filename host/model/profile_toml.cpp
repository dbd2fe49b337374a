// TOML for profiles: toml++ (header-only, built without exceptions) behind the C interface
// of profile_toml.h. Every C++ exception that could still arise (allocation) is caught here;
// nothing crosses into C.
#define TOML_EXCEPTIONS 0
#define TOML_ENABLE_FORMATTERS 0
#include <toml++/toml.h>

#include "model/profile_toml.h"

#include <algorithm>
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

// Owns the C strings of the entries until they are handed over.
struct builder {
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
        if (auto s = v.as_string()) e.s = dup(s->get());
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
    toml::parse_result before = toml::parse(doc.substr(0, cut));
    if (!before) return {};
    std::string best;
    toml::source_index best_line = 0;
    for (auto &&[k, v] : before.table()) {
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

} // namespace

extern "C" rlx_status rlx__toml_read(const char *text, size_t len, const char *source, rlx__toml_doc *out) {
    out->e = nullptr;
    out->n = 0;
    const char *src = source ? source : "<toml>";
    try {
        toml::parse_result r = toml::parse(std::string_view(text, len), std::string_view(src));
        if (!r) {
            const toml::parse_error &err = r.error();
            const std::string what = redefined_key(std::string_view(text, len), err);
            return rlx__fail(RLX_ERR_PROFILE, "%s:%u:%u: %s%sTOML syntax error: %.*s%s", src,
                             static_cast<unsigned>(err.source().begin.line),
                             static_cast<unsigned>(err.source().begin.column), what.c_str(),
                             what.empty() ? "" : ": defined twice (", static_cast<int>(err.description().size()),
                             err.description().data(), what.empty() ? "" : ")");
        }
        const toml::table &root = r.table();
        builder b;
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
