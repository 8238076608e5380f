//go:build unix

package testutil

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// watchTestBinary exits this process once pid is gone: no such process,
// or a zombie not yet reaped.
func watchTestBinary(pid int) {
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || zombie(pid) {
			os.Exit(3)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// zombie reports whether pid has exited and waits to be reaped (Linux;
// false where /proc is missing).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
