package main

import (
	"fmt"
	"image/color"
	"strconv"
	"strings"
	"time"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/mattingctl/mattingctl/internal/control"
)

// topWidth is the widest top draws: every line fits 80 columns. A
// narrower terminal cuts the lines at its edge.
const topWidth = 80

// topColumn is one column of top's replica table. Columns are separated
// by one space; numbers are right-aligned.
type topColumn struct {
	title string
	width int
	right bool
}

// topColumns add up, with their separators, to 66 columns, and to 80 with
// latencyColumns.
var (
	topColumns = []topColumn{
		{"REPLICA", 11, false}, {"STATE", 9, false}, {"PORT", 5, true}, {"INFLIGHT", 8, true},
		{"RPS", 6, true}, {"RESTARTS", 8, true}, {"CPU", 6, true}, {"RSS", 6, true},
	}
	latencyColumns = []topColumn{{"P50", 6, true}, {"P99", 6, true}}
)

// sparkSuffix is the widest peak label after a sparkline: "peak 99999/s".
const sparkSuffix = 12

// topStyles colour top's screen; the zero value draws plain text.
type topStyles struct {
	on                 bool
	title, header, dim lipgloss.Style
	state              map[control.State]lipgloss.Style
}

// newTopStyles is top's colours. The terminal's colour profile is the
// program's to apply: it leaves out what the terminal cannot show.
func newTopStyles() topStyles {
	fg := func(c color.Color) lipgloss.Style { return lipgloss.NewStyle().Foreground(c) }
	return topStyles{
		on:     true,
		title:  lipgloss.NewStyle().Bold(true),
		header: lipgloss.NewStyle().Bold(true).Reverse(true),
		dim:    lipgloss.NewStyle().Faint(true),
		state: map[control.State]lipgloss.Style{
			control.Ready:     fg(lipgloss.Green),
			control.Starting:  fg(lipgloss.Yellow),
			control.Draining:  fg(lipgloss.Cyan),
			control.Backoff:   fg(lipgloss.Yellow),
			control.Unhealthy: fg(lipgloss.Magenta),
			control.Failed:    fg(lipgloss.Red),
			control.Stopped:   fg(lipgloss.BrightBlack),
		},
	}
}

// render applies s to text, which is already padded to its width.
func (ts topStyles) render(s lipgloss.Style, text string) string {
	if !ts.on || text == "" {
		return text
	}
	return s.Render(text)
}

// topScreen is what one frame of top shows.
type topScreen struct {
	st    control.Status
	rates *rateTracker
	now   time.Time
	// width and height are the terminal's; 0 means unknown (80 wide, as
	// tall as needed).
	width, height int
	// latency reads a replica's p50 and p99; nil means replicaLatency.
	latency func(control.ReplicaStatus) (p50, p99 float64, ok bool)
	styles  topStyles
	footer  string
}

// lines draws the screen: the instance line, the queue, a row per
// replica, why replicas failed, and a sparkline per replica of its
// requests per second. No line is wider than 80 columns or the terminal;
// past the terminal's height the last lines are left off.
func (s topScreen) lines() []string {
	width := topWidth
	if s.width > 0 {
		width = min(width, s.width)
	}
	latency := s.latency
	if latency == nil {
		latency = replicaLatency
	}
	st := s.st
	var out []string
	policy := st.Policy
	if len(st.Services) > 0 {
		policy = fmt.Sprintf("%d services", len(st.Services))
	}
	out = append(out, s.styles.render(s.styles.title, fmt.Sprintf("instance %s: proxy port %d, %s, %d/%d replicas ready, up %s",
		st.Name, st.Port, policy, st.Ready(), st.Desired, formatDuration(s.now.Sub(st.StartedAt)))))
	out = append(out, topLoad("", st)...)
	// Each service's own queue and latency, under the instance's.
	for _, svc := range st.Services {
		out = append(out, topLoad(svc.Service, svc)...)
	}
	out = append(out, "")

	cols := topColumns
	for _, r := range st.Replicas {
		if _, _, ok := latency(r); ok {
			cols = append(cols[:len(cols):len(cols)], latencyColumns...)
			break
		}
	}
	titles := make([]string, len(cols))
	for i, c := range cols {
		titles[i] = c.title
	}
	out = append(out, s.styles.render(s.styles.header, tableRow(cols, titles)))
	keys := replicaKeys(st.Replicas)
	total, haveTotal := 0.0, false
	for i, r := range st.Replicas {
		cells := []string{r.Name, string(r.State), strconv.Itoa(r.Port), topInflight(r, 8), "-",
			strconv.Itoa(r.Restarts), "-", "-", "-", "-"}
		if rate, ok := s.rates.rate(keys[i]); ok {
			cells[4] = formatRate(rate)
			total += rate
			haveTotal = true
		}
		if r.Pid != 0 {
			cells[6] = formatCPU(r.CPUPercent)
			cells[7] = compactBytes(r.RSSBytes)
		}
		if p50, p99, ok := latency(r); ok {
			cells[8], cells[9] = formatMs(p50), formatMs(p99)
		}
		row := tableRow(cols, cells[:len(cols)])
		if style, ok := s.styles.state[r.State]; ok && s.styles.on {
			// Colour the state cell alone: it starts after the name.
			at := cols[0].width + 1
			row = row[:at] + s.styles.render(style, row[at:at+cols[1].width]) + row[at+cols[1].width:]
		}
		out = append(out, row)
	}
	for _, r := range st.Replicas {
		switch {
		case r.Error != "" && r.State == control.Failed:
			out = append(out, fmt.Sprintf("%s failed: %s", r.Name, r.Error))
		case r.Error != "":
			out = append(out, fmt.Sprintf("%s (%s): %s", r.Name, r.State, r.Error))
		}
		if r.HealthError != "" {
			out = append(out, fmt.Sprintf("%s (%s): last liveness check failed: %s", r.Name, r.State, r.HealthError))
		}
	}

	out = append(out, "")
	title := "requests per second, last minute"
	if haveTotal {
		title += ", all replicas " + formatRate(total) + "/s"
	}
	out = append(out, s.styles.render(s.styles.title, title))
	nameWidth := topColumns[0].width
	sparkWidth := max(width-nameWidth-sparkSuffix-2, 8)
	for i, r := range st.Replicas {
		line, peak := sparkline(s.rates.history(keys[i]), sparkWidth)
		label := ""
		if line != "" {
			label = "peak " + formatRate(peak) + "/s"
		}
		pad := sparkWidth - ansi.StringWidth(line)
		out = append(out, fit(r.Name, nameWidth, false)+" "+line+strings.Repeat(" ", max(pad, 0))+" "+label)
	}
	if s.footer != "" {
		out = append(out, "", s.styles.render(s.styles.dim, s.footer))
	}

	for i, l := range out {
		out[i] = strings.TrimRight(ansi.Truncate(l, width, ""), " ")
	}
	if s.height > 0 && len(out) > s.height {
		out = out[:s.height]
	}
	return out
}

// tableRow lays out cells in cols, each cut or padded to its width.
func tableRow(cols []topColumn, cells []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fit(cells[i], c.width, c.right)
	}
	return strings.Join(parts, " ")
}

// fit pads s to width columns, on the left when right-aligned, or cuts it.
func fit(s string, width int, right bool) string {
	w := ansi.StringWidth(s)
	switch {
	case w > width:
		return ansi.Truncate(s, width, "")
	case right:
		return strings.Repeat(" ", width-w) + s
	default:
		return s + strings.Repeat(" ", width-w)
	}
}

// topInflight is "inflight/cap", the cap in force (under --max-inflight
// auto, the one the replica has learned), or the count alone when there
// is no cap or both do not fit width.
func topInflight(r control.ReplicaStatus, width int) string {
	n := strconv.FormatInt(r.Inflight, 10)
	if r.Limit > 0 {
		if s := n + "/" + strconv.Itoa(r.Limit); len(s) <= width {
			return s
		}
	}
	return n
}

// formatRate renders requests per second in at most 6 columns.
func formatRate(v float64) string {
	switch {
	case v < 99.95:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v < 99999.5:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v/1000, 'f', 0, 64) + "k"
	}
}

// formatCPU renders a CPU percentage in at most 6 columns.
func formatCPU(p float64) string {
	if p < 999.95 {
		return strconv.FormatFloat(p, 'f', 1, 64) + "%"
	}
	return strconv.FormatFloat(p, 'f', 0, 64) + "%"
}

// compactBytes renders n in binary units in at most 6 columns: 512B,
// 1.5KiB, 210MiB, 3.2GiB.
func compactBytes(n uint64) string {
	if n < 1000 {
		return strconv.FormatUint(n, 10) + "B"
	}
	const units = "KMGTPE"
	v := float64(n)
	for i := 0; ; i++ {
		v /= 1024
		if v < 999.5 || i == len(units)-1 {
			prec := 0
			if v < 9.95 {
				prec = 1
			}
			return strconv.FormatFloat(v, 'f', prec, 64) + string(units[i]) + "iB"
		}
	}
}

// topLoad is top's lines of st's queue and latency; for who, a service
// of several, one short line led by its name.
func topLoad(who string, st control.Status) []string {
	queue := "no queue"
	if st.QueueMax > 0 {
		queue = fmt.Sprintf("%d/%d waiting", st.Queued, st.QueueMax)
	}
	l := st.Latency
	if who != "" {
		line := fmt.Sprintf("service %s: %s; rejected %d, failed %d", who, queue, st.Rejected, st.Failed)
		if l.Responses > 0 {
			line += fmt.Sprintf("; p50 %s, p99 %s", formatMs(l.P50Ms), formatMs(l.P99Ms))
		}
		return []string{line}
	}
	lines := []string{fmt.Sprintf("queue: %s; rejected %d, retried %d, failed %d", queue, st.Rejected, st.Retried, st.Failed)}
	if l.Responses > 0 {
		lines = append(lines, fmt.Sprintf("latency, last minute: p50 %s, p95 %s, p99 %s", formatMs(l.P50Ms), formatMs(l.P95Ms), formatMs(l.P99Ms)))
	}
	return lines
}
