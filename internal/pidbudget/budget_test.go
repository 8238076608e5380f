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
	spare := Spare()
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
	// 40 free, Spare (GOMAXPROCS+16) and a successor (6) kept.
	room := Room(l, 6)
	if err := Check([]Limit{l}, 2, 2+int(room), 6); err != nil {
		t.Fatalf("a scale that fits was refused: %v", err)
	}
	if err := Check([]Limit{l}, 40, 2, 6); err != nil {
		t.Fatalf("a scale down was refused: %v", err)
	}
	if err := Check(nil, 2, 4000, 6); err != nil {
		t.Fatalf("refused with no limit: %v", err)
	}
	err := Check([]Limit{{Name: "wide", Max: 1 << 20}, l}, 2, 40, 6)
	if err == nil {
		t.Fatal("scale 40 under pids.max 60 was not refused")
	}
	msg := err.Error()
	for _, want := range []string{"40 replicas", "cgroup /sys/fs/cgroup/pids/x pids.max", "20 of 60 are in use", "38 more replicas take about 228 (6 each)", "TasksMax="} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message is more than one line:\n%s", msg)
	}
	if room == 0 && !strings.Contains(msg, "no more replicas fit") || room > 0 && !strings.Contains(msg, "more fit (at most") {
		t.Errorf("message does not say what fits (room %d):\n%s", room, msg)
	}
}
