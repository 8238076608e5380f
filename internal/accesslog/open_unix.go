//go:build unix

package accesslog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// openFile opens path for append, creating it if missing. Access logs hold
// clients' addresses and query strings: not readable by every user.
//
// mattingctl often runs as root, and its log is often put in a shared
// directory (/tmp): there another user could have made path a symbolic
// link, or a hard link, to a file of root's (/etc/shadow), which root would
// then append to. In a directory that others can write, or that another
// user owns, path is therefore opened without following a symbolic link,
// and must turn out a regular file of this user with no other link. In a
// directory only this user (or root) can write, nobody else can have put
// anything at path, and a symbolic link there is followed as usual.
func openFile(path string) (*os.File, error) {
	dir := filepath.Dir(path)
	flags := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	shared := ""
	if di, err := os.Stat(dir); err == nil { // else the open says what is wrong
		shared = sharedDir(di)
	}
	if shared != "" {
		// Non-blocking too: opening a FIFO to write waits for a reader.
		flags |= syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	}
	f, err := os.OpenFile(path, flags, 0o640)
	if err != nil {
		switch {
		case shared != "" && isErrno(err, syscall.ELOOP, syscall.EMLINK):
			return nil, fmt.Errorf("%s is a symbolic link in %s, a directory %s; give the file's own path, or put the log in a directory only you can write", path, dir, shared)
		case shared != "" && isErrno(err, syscall.ENXIO): // a FIFO with no reader
			return nil, fmt.Errorf("%s is not a regular file (a FIFO), in %s, a directory %s; put the log in a directory only you can write", path, dir, shared)
		}
		return nil, err
	}
	if shared == "" {
		return f, nil
	}
	if err := checkOwnFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s %v, in %s, a directory %s; put the log in a directory only you can write", path, err, dir, shared)
	}
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sharedDir says why a directory is one where others could have put a file
// ("others can write", "of uid 1000"), or returns "" for one only this user
// or root can write.
func sharedDir(fi fs.FileInfo) string {
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("others can write (mode %v)", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Getuid() {
		return fmt.Sprintf("of uid %d", st.Uid)
	}
	return ""
}

// checkOwnFile says what is wrong with an open file that must be a regular
// file of this user with one link ("is a FIFO", "belongs to uid 1000").
func checkOwnFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("is not a regular file (%v)", fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != os.Getuid() {
		return fmt.Errorf("belongs to uid %d, not to you", st.Uid)
	}
	if st.Nlink > 1 {
		return fmt.Errorf("has %d hard links: it may be another file's", st.Nlink)
	}
	return nil
}

// isErrno reports whether err is one of errnos.
func isErrno(err error, errnos ...syscall.Errno) bool {
	for _, e := range errnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
