# Charts for bench/run (gnuplot 5). bench/run calls:
#   gnuplot -e "throughput_dat='T'; latency_dat='L'; systems='direct sluice-1t ...'; \
#               outdir='DIR'; subtitle='...'" bench/plot.gp
# T: one line per throughput workload: a quoted label, then each system's median as a ratio to
#    direct's ("?" where a system has no figure), in the order of `systems`.
# L: one line per system: its name, the median rr p50 and p99 in microseconds.
# Writes DIR/results-throughput.png and DIR/results-latency.png. pngcairo when this gnuplot has
# it (Debian's gnuplot-nox does), else the libgd png terminal.

if (!exists("subtitle")) subtitle = ""
set datafile missing "?"
set termoption noenhanced

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 1200,600 font "sans,10" noenhanced
} else {
    set terminal png size 1200,600 noenhanced
}

nsys = words(systems)
bw = 0.8 / nsys
set style fill solid 0.85 border -1
set boxwidth bw
set key outside right top vertical
set grid ytics
set xtics nomirror scale 0
set yrange [0:*]

# --- throughput: ratio to direct, one group per workload, one bar per system
set output outdir . "/results-throughput.png"
set title "Throughput as a ratio to direct (higher is better)\n" . subtitle
set ylabel "x direct (median)"
set xrange [-0.6:*]
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linewidth 1.5 \
    linecolor rgb "#444444" front
plot throughput_dat using 0:(NaN):xtic(1) with points notitle, \
     for [i=1:nsys] throughput_dat using ($0 - 0.4 + bw * (i - 0.5)):(column(i + 1)) \
         with boxes title word(systems, i), \
     for [i=1:nsys] throughput_dat using ($0 - 0.4 + bw * (i - 0.5)):(column(i + 1)): \
         (sprintf("%.2f", column(i + 1))) with labels offset 0,0.7 font ",8" notitle
unset arrow 1

# --- latency: rr p50 and p99 per system
set output outdir . "/results-latency.png"
set title "rr 100 conns x 64 B: round-trip latency (lower is better)\n" . subtitle
set ylabel "microseconds (median of the runs)"
set boxwidth 0.35
set xrange [-0.6:*]
plot latency_dat using 0:(NaN):xtic(1) with points notitle, \
     latency_dat using ($0 - 0.2):2 with boxes title "p50", \
     latency_dat using ($0 + 0.2):3 with boxes title "p99", \
     latency_dat using ($0 - 0.2):2:(sprintf("%.0f", $2)) with labels offset 0,0.7 font ",8" \
         notitle, \
     latency_dat using ($0 + 0.2):3:(sprintf("%.0f", $3)) with labels offset 0,0.7 font ",8" \
         notitle
