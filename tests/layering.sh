#!/bin/sh
# The layer rule of docs/architecture.md, checked on the library's objects: each layer calls only
# the layers before it in core, io, model, dist, fusion, kv, runtime, tools (the tokenizer calls
# core only). An upward call is how the old import circle began; this test names each one.
# Usage (ctest "layering"): layering.sh NM OBJECT...
nm=$1
shift
for o in "$@"; do
    # .../rlx_objects.dir/host/io/weights.c.o -> io; .../fusion/plan.c.o -> fusion
    case $o in
    */host/*) layer=${o##*/host/} layer=${layer%%/*} ;;
    */fusion/*) layer=fusion ;;
    *) echo "layering: $o is outside host/ and fusion/" >&2; exit 1 ;;
    esac
    "$nm" "$o" | sed "s|^|$layer ${o##*.dir/} |"
done | awk '
BEGIN {
    n = split("core io model dist fusion kv runtime tools tokenizer", order, " ")
    for (i = 1; i <= n; i++) rank[order[i]] = i
}
# "<layer> <object> <address> <type> <symbol>" for a definition, "<layer> <object> U <symbol>" for a use
NF == 5 && $4 ~ /^[TDBRC]$/ { def_layer[$5] = $1; def_obj[$5] = $2; next }
NF == 4 && $3 == "U" { uses[++m] = $0 }
END {
    bad = 0
    for (i = 1; i <= m; i++) {
        split(uses[i], f, " ")
        from = f[1]; sym = f[4]
        if (!(sym in def_layer)) continue
        calls++
        to = def_layer[sym]
        if (to == from) continue
        if (!(from in rank) || !(to in rank)) { printf "layering: host/%s or host/%s is a layer the rule does not know: place it in docs/architecture.md and here\n", from, to; bad++; continue }
        up = from == "tokenizer" ? to != "core" : rank[to] > rank[from]
        if (up) {
            printf "layering: %s (%s) calls %s in %s (%s): an edge back up (docs/architecture.md)\n", f[2], from, sym, def_obj[sym], to
            bad++
        }
    }
    if (calls == 0) { print "layering: no calls between objects read (nm failed?)"; exit 1 }
    if (bad) exit 1
    printf "layering: %d references between the library objects, none back up\n", calls
}'
