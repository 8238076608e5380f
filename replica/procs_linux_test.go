package replica

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestProcsThroughProcfs: what the sweep reads of /proc, read through
// procfs, agrees with the files themselves.
func TestProcsThroughProcfs(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip(err)
	}
	if got, want := bootID(), strings.TrimSpace(string(b)); got != want || got == "" {
		t.Errorf("bootID() = %q, want %q", got, want)
	}
	self := os.Getpid()
	start, err := procStart(self)
	if err != nil || start <= 0 {
		t.Fatalf("procStart(self) = %d, %v", start, err)
	}
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// starttime is the 20th field after the command name.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if fields[19] != strconv.FormatInt(start, 10) {
		t.Errorf("procStart(self) = %d, /proc/self/stat says %s", start, fields[19])
	}
	pgid, err := syscall.Getpgid(self)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range groupMembers(pgid) {
		found = found || m.pid == self && m.start == start
	}
	if !found {
		t.Errorf("groupMembers(%d) does not list this process", pgid)
	}
	if _, err := procStart(1 << 30); err != errGone {
		t.Errorf("procStart of no process: %v, want errGone", err)
	}
}
