//go:build !unix

package testutil

import "syscall"

// smallReceiveBuffer leaves the buffer as it is where sockets are not
// Unix ones: the slow reader then takes longer to fill it, nothing more.
func smallReceiveBuffer(syscall.RawConn) error { return nil }
