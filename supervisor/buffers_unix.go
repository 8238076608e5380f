//go:build unix

package supervisor

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkPrivate reports whether dir, described by fi, belongs to this user
// and no one else can enter it.
func checkPrivate(dir string, fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("it belongs to uid %d, not to you", st.Uid)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("its mode is %v: others can reach it", fi.Mode().Perm())
	}
	return nil
}
