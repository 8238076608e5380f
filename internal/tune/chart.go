package tune

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// WriteChart writes an SVG chart of results: a point per layout at its
// throughput (x) and p99 (y), labelled with its layout, the best (index
// best in results, -1 for none) drawn apart. Up and to the left is
// slower; right and down is better.
func WriteChart(w io.Writer, results []Result, best int) error {
	const (
		width, height = 720, 440
		left, right   = 70, 30
		top, bottom   = 30, 50
	)
	maxX, maxY := 0.0, 0.0
	for _, r := range results {
		maxX = max(maxX, r.Throughput())
		maxY = max(maxY, r.P99.Seconds()*1000)
	}
	maxX, maxY = niceCeil(maxX), niceCeil(maxY)
	plotW, plotH := float64(width-left-right), float64(height-top-bottom)
	x := func(v float64) float64 { return float64(left) + v/maxX*plotW }
	y := func(v float64) float64 { return float64(top) + plotH - v/maxY*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13">mattingctl tune: throughput against p99, a point per layout (replicas x CPUs each, inflight)</text>`+"\n", left)
	// Axes, with five ticks each.
	fmt.Fprintf(&b, `<path d="M%d %d V%d H%d" stroke="black" fill="none"/>`+"\n", left, top, height-bottom, width-right)
	for i := 0; i <= 4; i++ {
		vx, vy := maxX*float64(i)/4, maxY*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(vx), height-bottom+15, trimFloat(vx))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(vy)+4, trimFloat(vy))
		if i > 0 {
			fmt.Fprintf(&b, `<path d="M%d %.1f H%d" stroke="#ddd"/>`+"\n", left+1, y(vy), width-right)
		}
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">requests/s</text>`+"\n", float64(left)+plotW/2, height-12)
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">p99 (ms)</text>`+"\n", float64(top)+plotH/2)
	for i, r := range results {
		px, py := x(r.Throughput()), y(r.P99.Seconds()*1000)
		fill, label := "#4472c4", r.Layout.String()
		if r.Errors > 0 {
			fill, label = "#c0504d", label+fmt.Sprintf(" (%d errors)", r.Errors)
		}
		if i == best {
			fill, label = "#2e8b57", label+" (best)"
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="8" fill="none" stroke="%s" stroke-width="2"/>`+"\n", px, py, fill)
		}
		anchor, dx := "start", 7.0
		if px > float64(width-right)-150 {
			anchor, dx = "end", -7
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", px, py, fill)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`+"\n", px+dx, py-5, anchor, html.EscapeString(label))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so that the
// axes' ticks are round numbers; at least 1.
func niceCeil(v float64) float64 {
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for p > v && p > 1e-3 {
		p /= 10
	}
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return max(m*p, 1)
		}
	}
	return max(10*p, 1)
}

// trimFloat writes a tick value without trailing zeros.
func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
