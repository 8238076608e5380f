//go:build !unix

package testutil

// watchTestBinary does nothing where processes cannot be signalled.
func watchTestBinary(int) {}
