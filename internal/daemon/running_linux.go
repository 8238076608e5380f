package daemon

import (
	"bytes"
	"os"
	"strconv"
)

// processRunning returns a function reporting whether process pid still
// runs: /proc has it, not as a zombie (an instance whose parent has not
// reaped it has written its last line all the same), and with the start
// time it had at first, so that another process given the pid later is
// not taken for it.
func processRunning(pid int) func() bool {
	first, ok := procStart(pid)
	return func() bool {
		if !ok {
			return false
		}
		now, running := procStart(pid)
		return running && now == first
	}
}

// procStart returns process pid's start time, in clock ticks after boot,
// and false if there is no such process or it is a zombie.
func procStart(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses,
	// so the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is the state, f[19] the start time (fields 3 and 22).
	if len(f) < 20 || f[0][0] == 'Z' || f[0][0] == 'X' {
		return "", false
	}
	return string(f[19]), true
}
