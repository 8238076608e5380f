//go:build !linux

package replica

import (
	"errors"
	"syscall"
)

// Cgroups are Linux's: elsewhere the tracker falls back to process groups.

func newInstanceCgroup(string) (string, error) {
	return "", errors.New("cgroups exist on Linux only")
}

func newLeafCgroup(string, string) (string, int, error) { return "", -1, errors.ErrUnsupported }

func bornInCgroup(*syscall.SysProcAttr, int) {}

func isCgroup(string) bool { return false }

func killCgroup(string) error { return errors.ErrUnsupported }

func cgroupPopulated(string) bool { return false }

func cgroupProcs(string) []int { return nil }

func removeCgroup(string) error { return nil }

func closeCgroupFd(int) {}
