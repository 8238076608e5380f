package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// writeStatus writes st as the table `mattingctl status` prints.
func writeStatus(w io.Writer, st control.Status, now time.Time) error {
	if len(st.Services) > 0 {
		return writeServices(w, st, now)
	}
	fmt.Fprintf(w, "instance %s: pid %d, proxy port %d, %s, %d/%d replicas ready, up %s\n",
		st.Name, st.Pid, st.Port, st.Policy, st.Ready(), st.Desired, formatDuration(now.Sub(st.StartedAt)))
	return writeService(w, st, now)
}

// writeServices is writeStatus of an instance of several services: a line
// for the instance, then each service as writeService shows one.
func writeServices(w io.Writer, st control.Status, now time.Time) error {
	fmt.Fprintf(w, "instance %s: pid %d, proxy port %d, %d services, %d/%d replicas ready, up %s\n",
		st.Name, st.Pid, st.Port, len(st.Services), st.Ready(), st.Desired, formatDuration(now.Sub(st.StartedAt)))
	for _, svc := range st.Services {
		route := svc.Route
		if svc.StripPrefix {
			route += ", prefix stripped"
		}
		fmt.Fprintf(w, "\nservice %s (route %s): %s, %d/%d replicas ready\n", svc.Service, route, svc.Policy, svc.Ready(), svc.Desired)
		if err := writeService(w, svc, now); err != nil {
			return err
		}
	}
	return nil
}

// writeService writes what status shows of one service: its command, its
// queue, its latency and its replicas' table.
func writeService(w io.Writer, st control.Status, now time.Time) error {
	fmt.Fprintf(w, "command: %s\n", strings.Join(st.Command, " "))
	fmt.Fprintf(w, "queue: %d waiting (max %d%s); rejected %d, retried %d, failed %d\n",
		st.Queued, st.QueueMax, queueTimeout(st.Settings), st.Rejected, st.Retried, st.Failed)
	if st.Batches > 0 { // shown once batching (--batch-path) has sent a batch
		fmt.Fprintf(w, "batches: %d sent, %.1f requests each on average; %d answered not as a batch (their requests went alone)\n",
			st.Batches, float64(st.Batched)/float64(st.Batches), st.BatchesSplit)
	}
	if len(st.Changed) > 0 {
		fmt.Fprintln(w, formatChanged(st, now))
	}
	if a := st.Autoscale; a != nil {
		fmt.Fprintln(w, formatAutoscale(*a, st.Desired, now))
	}
	if l := st.Latency; l.Responses > 0 {
		noun := "responses"
		if l.Responses == 1 {
			noun = "response"
		}
		fmt.Fprintf(w, "latency, last minute, all replicas: p50 %s, p95 %s, p99 %s (%d %s)\n",
			formatMs(l.P50Ms), formatMs(l.P95Ms), formatMs(l.P99Ms), l.Responses, noun)
	}
	fmt.Fprintln(w)
	gpus, cpus, upgraded := false, false, false
	for _, r := range st.Replicas {
		gpus = gpus || r.GPU != ""
		cpus = cpus || r.CPUs != ""
		upgraded = upgraded || r.Upgraded != 0
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// Under --max-inflight auto each replica's cap moves: LIMIT shows it.
	adaptive := st.AdaptiveInflight != nil
	header := "REPLICA\tPORT\tPID\tSTATE\tUPTIME\tRESTARTS\tLAST RESTART\tINFLIGHT"
	if adaptive {
		header += "\tLIMIT"
	}
	header += "\tREQUESTS\tERRORS\tRPS\tP50\tP99\tCPU\tRSS"
	if upgraded { // WebSocket tunnels, shown once there are any
		header += "\tUPGRADED"
	}
	if gpus {
		header += "\tGPU"
	}
	if cpus {
		header += "\tCPUS"
	}
	fmt.Fprintln(tw, header)
	for _, r := range st.Replicas {
		pid, uptime, cpu, rss := "-", "-", "-", "-"
		if r.Pid != 0 {
			pid = strconv.Itoa(r.Pid)
			cpu = fmt.Sprintf("%.1f%%", r.CPUPercent)
			rss = formatBytes(r.RSSBytes)
		}
		if r.StartedAt != nil {
			uptime = formatDuration(now.Sub(*r.StartedAt))
		}
		inflight := strconv.FormatInt(r.Inflight, 10)
		if r.Limit > 0 && !adaptive {
			inflight += "/" + strconv.Itoa(r.Limit)
		}
		if r.OldestInflightMs >= 1000 { // a request held that long is worth seeing
			inflight += " (oldest " + formatDuration(time.Duration(r.OldestInflightMs)*time.Millisecond) + ")"
		}
		reason := r.LastRestart
		if reason == "" {
			reason = "-"
		}
		if adaptive {
			limit := "-" // no process in rotation: nothing learned
			if r.Limit > 0 {
				limit = strconv.Itoa(r.Limit)
			}
			inflight += "\t" + limit
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s",
			r.Name, r.Port, pid, r.State, uptime, r.Restarts, reason, inflight, r.Requests, r.Errors,
			r.RPS, formatMs(r.P50Ms), formatMs(r.P99Ms), cpu, rss)
		if upgraded {
			fmt.Fprintf(tw, "\t%d", r.Upgraded)
		}
		if gpus {
			fmt.Fprintf(tw, "\t%s", r.GPU)
		}
		if cpus {
			fmt.Fprintf(tw, "\t%s", r.CPUs)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range st.Replicas {
		switch {
		case r.Error != "" && r.State == control.Failed:
			fmt.Fprintf(w, "%s failed: %s\n", r.Name, r.Error)
		case r.Error != "":
			fmt.Fprintf(w, "%s (%s): %s\n", r.Name, r.State, r.Error)
		}
		if r.HealthError != "" {
			fmt.Fprintf(w, "%s (%s): last liveness check failed: %s\n", r.Name, r.State, r.HealthError)
		}
	}
	return nil
}

// writeScale writes what a scale call changed, one line.
func writeScale(w io.Writer, res control.ScaleResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s: %d -> %d replicas", res.Name, res.From, res.To)
	list := func(verb string, rs []control.ReplicaStatus) {
		if len(rs) == 0 {
			return
		}
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = fmt.Sprintf("%s (port %d)", r.Name, r.Port)
		}
		fmt.Fprintf(&b, "; %s %s", verb, strings.Join(parts, ", "))
	}
	list("started", res.Started)
	list("stopped", res.Stopped)
	if res.From == res.To && len(res.Started) == 0 {
		b.WriteString("; nothing to do")
	}
	b.WriteByte('\n')
	if res.AutoscaleOff != "" {
		b.WriteString(res.AutoscaleOff + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatCount is what `scale` without a count prints: the replica count,
// how many are ready, and the autoscaler's line when there is one.
func formatCount(st control.Status, now time.Time) string {
	s := fmt.Sprintf("instance %s: %d replicas, %d ready\n", st.Name, st.Desired, st.Ready())
	if a := st.Autoscale; a != nil {
		s += formatAutoscale(*a, st.Desired, now) + "\n"
	}
	return s
}

// formatAutoscale is status's line on the autoscaler: its bounds, the
// count the load asks for and the last decision, or that a scale by hand
// turned it off.
func formatAutoscale(a control.AutoscaleStatus, desired int, now time.Time) string {
	if !a.On {
		return fmt.Sprintf("autoscale %d:%d off: the count was set by hand (mattingctl scale), %d replicas", a.Min, a.Max, desired)
	}
	line := fmt.Sprintf("autoscale %d:%d target %d", a.Min, a.Max, a.Target)
	if a.Last != "" && a.LastAt != nil {
		line += fmt.Sprintf(": %s (%s ago)", a.Last, formatDuration(now.Sub(*a.LastAt)))
	}
	return line
}

// formatDuration renders d compactly: 45s, 12m3s, 5h2m, 3d4h.
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// formatMs renders a latency in milliseconds compactly, to three
// significant digits (the quantiles are within 3.2%): 850us, 12.3ms,
// 1.54s; "-" for 0, which means no responses.
func formatMs(ms float64) string {
	switch {
	case ms <= 0:
		return "-"
	case ms < 1:
		return fmt.Sprintf("%.0fus", ms*1000)
	case ms < 9.995: // three significant digits, as precise as the quantiles
		return fmt.Sprintf("%.2fms", ms)
	case ms < 99.95:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 999.5:
		return fmt.Sprintf("%.0fms", ms)
	case ms < 9995:
		return fmt.Sprintf("%.2fs", ms/1000)
	case ms < 99950:
		return fmt.Sprintf("%.1fs", ms/1000)
	default:
		return fmt.Sprintf("%.0fs", ms/1000)
	}
}

// formatBytes renders n in binary units: 512B, 1.5KiB, 210MiB, 3.2GiB.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v >= 100 {
		return fmt.Sprintf("%.0f%ciB", v, "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f%ciB", v, "KMGTPE"[exp])
}

// writeRestart writes what a rolling restart did, a line per replica.
func writeRestart(w io.Writer, res control.RestartResult) error {
	var b strings.Builder
	for _, r := range res.Replaced {
		if r.Revived {
			fmt.Fprintf(&b, "%s: failed -> pid %d (port %d)\n", r.Name, r.NewPid, r.NewPort)
			continue
		}
		fmt.Fprintf(&b, "%s: pid %d (port %d) -> pid %d (port %d)\n", r.Name, r.OldPid, r.OldPort, r.NewPid, r.NewPort)
	}
	for _, name := range res.Skipped {
		fmt.Fprintf(&b, "%s: skipped, a new process is on its way\n", name)
	}
	if res.Error == "" {
		fmt.Fprintf(&b, "instance %s: %d replicas restarted\n", res.Name, len(res.Replaced))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// queueTimeout is the queue line's ", timeout D", from the settings in
// force: auto is the --upstream-timeout value. Empty from an instance
// that does not report its settings.
func queueTimeout(settings map[string]string) string {
	qt, ok := settings["queue-timeout"]
	switch {
	case !ok:
		return ""
	case qt == "auto":
		qt = settings["upstream-timeout"]
	case qt == "0":
		qt = "none"
	}
	return ", timeout " + qt
}

// formatChanged is status's line of the settings a reload or set changed
// since up started, in up's flag order as Settings has no order: by name.
func formatChanged(st control.Status, now time.Time) string {
	names := slices.Sorted(maps.Keys(st.Changed))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + " " + st.Changed[n]
		if n == "command" {
			parts[i] = "command"
		}
	}
	when := ""
	if st.ChangedAt != nil {
		when = fmt.Sprintf(" (last by %s, %s ago)", st.ChangedBy, formatDuration(now.Sub(*st.ChangedAt)))
	}
	return "changed since start" + when + ": " + strings.Join(parts, ", ")
}
