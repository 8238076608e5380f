package tune

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable writes results as a table, in the order given (Ranked: the
// best first): layout, clients, requests/s, p50, p99, memory, errors, and
// how many runs the figures are of (medians past one: Combine).
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICAS\tCPUS\tINFLIGHT\tCLIENTS\tREQ/S\tP50\tP99\tRSS\tERRORS\tRUNS")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\n", r.Layout.Replicas, cpusColumn(r.Layout.Shape),
			inflightColumn(r), r.Clients, fmtRate(r.Throughput()), fmtDuration(r.P50), fmtDuration(r.P99), fmtBytes(r.RSS), r.Errors, max(1, r.Runs))
	}
	return tw.Flush()
}

// cpusColumn is a shape's CPUs: "2 each", "1 each, shared", "-" unpinned.
func cpusColumn(s Shape) string {
	switch {
	case s.CPUsEach == 0:
		return "-"
	case s.Shared:
		return strconv.Itoa(s.CPUsEach) + " each, shared"
	}
	return strconv.Itoa(s.CPUsEach) + " each"
}

// inflightColumn is the cap, with the caps auto learned: "auto (4,5)".
func inflightColumn(r Result) string {
	s := r.Layout.InflightString()
	if r.Layout.Inflight == Auto && len(r.Limits) > 0 {
		vals := make([]string, len(r.Limits))
		for i, n := range r.Limits {
			vals[i] = strconv.Itoa(n)
		}
		s += " (" + strings.Join(vals, ",") + ")"
	}
	return s
}

// fmtRate writes requests a second to three significant digits or more,
// so that a few percent show on a slow model: "4.57", "52.3", "1480".
func fmtRate(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
