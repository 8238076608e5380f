package pidbudget

import (
	"strings"
	"testing"
)

func TestTightest(t *testing.T) {
	if _, ok := Tightest(nil); ok {
		t.Fatal("Tightest(nil) found a limit")
	}
	ls := []Limit{
		{Name: "wide", Max: 10000, Used: 100},
		{Name: "tight", Max: 100, Used: 60},
		{Name: "full", Max: 50, Used: 70}, // over: a limit lowered under use
	}
	if got, _ := Tightest(ls); got.Name != "full" || got.Free() != 0 {
		t.Fatalf("Tightest = %+v (free %d), want full with 0 free", got, got.Free())
	}
}

func TestRoom(t *testing.T) {
	const spare = Spare
	tests := []struct {
		name      string
		free, per int64
		want      int64
	}{
		{"nothing past the spare", spare, 6, 0},
		{"a successor's worth only", spare + 6, 6, 0},
		{"one replica and a successor", spare + 12, 6, 1},
		{"ten of one task each", spare + 11, 1, 10},
		{"zero per replica counts as one", spare + 11, 0, 10},
		{"less than the spare", spare - 5, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Limit{Max: 1000, Used: 1000 - tt.free}
			if got := Room(l, tt.per); got != tt.want {
				t.Fatalf("Room(free %d, %d per replica) = %d, want %d", tt.free, tt.per, got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	l := Limit{Name: "cgroup /sys/fs/cgroup/pids/x pids.max", Max: 60, Used: 20, Raise: "systemd: TasksMax="}
	// 40 free, Spare and a successor (6) kept: (40-8)/6-1 = 4.
	room := Room(l, 6)
	if err := Check([]Limit{l}, 2, 2+int(room), 6, true); err != nil {
		t.Fatalf("a scale that fits was refused: %v", err)
	}
	if err := Check([]Limit{l}, 40, 2, 6, true); err != nil {
		t.Fatalf("a scale down was refused: %v", err)
	}
	if err := Check(nil, 2, 4000, 6, true); err != nil {
		t.Fatalf("refused with no limit: %v", err)
	}
	err := Check([]Limit{{Name: "wide", Max: 1 << 20}, l}, 2, 40, 6, true)
	if err == nil {
		t.Fatal("scale 40 under pids.max 60 was not refused")
	}
	msg := err.Error()
	for _, want := range []string{"cgroup /sys/fs/cgroup/pids/x pids.max allows 60 tasks and 20 are in use", "38 more replicas take about 228 (6 each, as the largest running one takes)", "14 are kept spare", "room for 4 more (at most 6 replicas)", "TasksMax="} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message is more than one line:\n%s", msg)
	}
	if room != 4 {
		t.Errorf("Room = %d, want 4", room)
	}
	err = Check([]Limit{l}, 2, 3, 20, true)
	if err == nil || !strings.Contains(err.Error(), "1 more replica takes about 20") || !strings.Contains(err.Error(), "room for none") {
		t.Errorf("Check(one more of 20 tasks) = %v", err)
	}
}

// At `up` nothing runs to measure: the message says the estimate is a
// floor.
func TestCheckUnmeasured(t *testing.T) {
	l := Limit{Name: "cgroup /x pids.max", Max: 30, Used: 5, Raise: "TasksMax="}
	err := Check([]Limit{l}, 0, 40, 1, false)
	if err == nil || !strings.Contains(err.Error(), "40 more replicas take about 40 (at least 1 each)") {
		t.Fatalf("Check = %v", err)
	}
}
