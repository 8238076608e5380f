package main

import (
	"slices"
	"testing"
	"time"
)

func TestShellSplit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"mattingctl up --replicas 1 -- python3 app.py", []string{"mattingctl", "up", "--replicas", "1", "--", "python3", "app.py"}},
		{`srv 'a b' 'it'\''s'`, []string{"srv", "a b", "it's"}},
		{`x ''`, []string{"x", ""}},
	} {
		if got, err := shellSplit(c.in); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("shellSplit(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := shellSplit("a 'b"); err == nil {
		t.Error("an unclosed quote is not refused")
	}
}

// TestParseTuneOutput reads tune's output as tune.WriteTable and the
// command print it.
func TestParseTuneOutput(t *testing.T) {
	errOut := "tune: 2 CPUs (0-1), 100MiB memory available; replicas x CPUs each: 1x2; inflight 1,2,auto (growing while requests/s rise); 5s of warm-up and 20s measured per layout, then ..., within --budget 10m0s\n"
	out := `REPLICAS  CPUS            INFLIGHT        CLIENTS  REQ/S  P50    P99    RSS     ERRORS  RUNS
1         2 each          2               4        4.71   1.48s  2.53s  201MiB  0       3
4         1 each, shared  auto (4,1,4,3)  16       4.40   6.95s  13.1s  799MiB  0       1

best: no errors; among those within 5% of the top requests/s, the lowest p99:
  mattingctl up --replicas 1 --cpus 0-1 --max-inflight 2 --health /health -- /usr/bin/python3 examples/flask-matting/app.py
`
	b, err := parseTuneOutput(out, errOut)
	if err != nil {
		t.Fatal(err)
	}
	want := tuneBest{
		up:     "mattingctl up --replicas 1 --cpus 0-1 --max-inflight 2 --health /health -- /usr/bin/python3 examples/flask-matting/app.py",
		layout: "replicas 1, CPUs 2 each, inflight 2", rate: 4.71, runs: 3, clients: 4, warmup: 5 * time.Second, duration: 20 * time.Second,
	}
	if b != want {
		t.Errorf("parsed %+v\nwant   %+v", b, want)
	}
	if _, err := parseTuneOutput("no table\n", errOut); err == nil {
		t.Error("no table: no error")
	}
}
