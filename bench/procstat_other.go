//go:build !linux

package main

import (
	"errors"
	"time"
)

var errNoProc = errors.New("CPU time per process is read from Linux's /proc")

func procTree(pid int) ([]int, error) { return nil, errNoProc }

func procCPU(pids []int) (cpu, user time.Duration, err error) { return 0, 0, errNoProc }
