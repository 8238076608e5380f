package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseCPUs(t *testing.T) {
	allowed := []int{0, 1, 2, 3, 4, 5, 6, 7}
	for _, tc := range []struct {
		in       string
		replicas int
		want     [][]int
	}{
		{"0-3,4-7", 2, [][]int{{0, 1, 2, 3}, {4, 5, 6, 7}}},
		{"0,1,2,3", 2, [][]int{{0}, {1}, {2}, {3}}},
		{"0+2,1+3", 2, [][]int{{0, 2}, {1, 3}}},
		{"0-1+6-7, 2-3", 2, [][]int{{0, 1, 6, 7}, {2, 3}}},
		{"3-3+3", 1, [][]int{{3}}},
		{"auto", 2, [][]int{{0, 1, 2, 3}, {4, 5, 6, 7}}},
		{"auto", 3, [][]int{{0, 1, 2}, {3, 4, 5}, {6, 7}}},
		{"auto", 8, [][]int{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}},
		{"auto", 10, [][]int{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}},
		{" auto ", 1, [][]int{{0, 1, 2, 3, 4, 5, 6, 7}}},
	} {
		got, err := parseCPUs(tc.in, tc.replicas, allowed)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseCPUs(%q, %d) = %v, %v; want %v", tc.in, tc.replicas, got, err, tc.want)
		}
	}
}

func TestParseCPUsRefuses(t *testing.T) {
	allowed := []int{0, 1, 4, 5}
	for _, tc := range []struct{ in, want string }{
		{"", "want auto, or CPU sets"},
		{"0-3;4-7", "want auto, or CPU sets"},
		{"0,,1", "want auto, or CPU sets"},
		{"3-1", "want auto, or CPU sets"},
		{"-1", "want auto, or CPU sets"},
		{"a", "want auto, or CPU sets"},
		{"0+", "want auto, or CPU sets"},
		{"all", "want auto, or CPU sets"},
		{"0-1,2-3", "--cpus 0-1,2-3: CPU 2 is not one mattingctl may use (its affinity mask is 0-1,4-5)"},
	} {
		_, err := parseCPUs(tc.in, 2, allowed)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseCPUs(%q): %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

// TestAutoCPUsKeepsHyperthreadsTogether: on a machine whose core k has
// CPUs k and k+4, two replicas get two whole cores each.
func TestAutoCPUsKeepsHyperthreadsTogether(t *testing.T) {
	saved := coreOf
	defer func() { coreOf = saved }()
	coreOf = func(cpu int) int { return cpu % 4 }
	got, err := parseCPUs("auto", 2, []int{0, 1, 2, 3, 4, 5, 6, 7})
	if want := [][]int{{0, 1, 4, 5}, {2, 3, 6, 7}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
}

func TestShareOut(t *testing.T) {
	for _, c := range []struct {
		n       int
		weights []int
		want    []cpuShare
	}{
		{2, []int{3, 1}, []cpuShare{{0, 1}, {1, 1}}},
		{8, []int{3, 1}, []cpuShare{{0, 6}, {6, 2}}},
		{3, []int{10, 1, 1}, []cpuShare{{0, 1}, {1, 1}, {2, 1}}},
		{7, []int{2, 2, 1}, []cpuShare{{0, 3}, {3, 3}, {6, 1}}},
		{1, []int{3, 1}, []cpuShare{{0, 1}, {0, 1}}},
	} {
		got := shareOut(c.n, c.weights)
		if !slices.Equal(got, c.want) {
			t.Errorf("shareOut(%d, %v) = %v; want %v", c.n, c.weights, got, c.want)
		}
		total := 0
		for _, s := range got {
			total += s.n
		}
		if c.n >= len(c.weights) && total != c.n {
			t.Errorf("shareOut(%d, %v) shares out %d CPUs", c.n, c.weights, total)
		}
	}
}
