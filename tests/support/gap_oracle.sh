#!/bin/sh
# A deterministic accuracy oracle for tests (chanasc's command: oracle protocol): an arch
# dict on stdin, {"val_acc": .., "train_acc": ..} on stdout.
#
# Validation accuracy grows with the kernels and expand ratios of the blocks the depths keep
# and with the resolution; training accuracy runs ahead of it with the expand ratios (wide
# blocks overfit): the generalization gap is 0.0015 x the sum of the active expand ratios.
exec awk '
{ s = s $0 }
END {
    gsub(/[ \t\r\n]/, "", s)
    match(s, /"ks":\[[0-9,]*\]/); ks = substr(s, RSTART + 6, RLENGTH - 7)
    match(s, /"e":\[[0-9,]*\]/); e = substr(s, RSTART + 5, RLENGTH - 6)
    match(s, /"d":\[[0-9,]*\]/); d = substr(s, RSTART + 5, RLENGTH - 6)
    match(s, /"r":\[?[0-9]+/); r = substr(s, RSTART + 4, RLENGTH - 4); sub(/\[/, "", r)
    if (split(ks, K, ",") != 20 || split(e, E, ",") != 20 || split(d, D, ",") != 5) {
        print "not an arch dict: " s > "/dev/stderr"
        exit 1
    }
    k = 0; x = 0
    for (i = 0; i < 20; i++) if (i % 4 < D[int(i / 4) + 1]) { k += K[i + 1]; x += E[i + 1] }
    val = 0.45 + 0.0015 * k + 0.001 * x + 0.0005 * (r - 160) / 16
    train = val + 0.0015 * x
    if (train > 1) train = 1
    printf "{\"val_acc\": %.6f, \"train_acc\": %.6f}\n", val, train
}'
