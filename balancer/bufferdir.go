package balancer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The buffer directory can vanish under a running proxy: tmp cleaners
// (systemd-tmpfiles, tmpreaper) remove what has not been touched for
// days. A body, or a response being read ahead (spoolbody.go), that finds
// it gone makes it again, with the mode `up` gave it, and is written there;
// only if that fails is a body refused, with a 503 the client may retry
// and the reason in the log, not in the answer, and a response read only
// as fast as its client takes it.

// createFile creates a file for a body in the buffer directory, making the
// directory again when it has gone.
func (b *buffers) createFile() (*os.File, error) {
	f, err := os.CreateTemp(b.dir, BufferFilePattern)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	if err := remakeDir(b.dir); err != nil {
		return nil, err
	}
	if b.onRemade != nil {
		b.onRemade(b.dir)
	}
	return os.CreateTemp(b.dir, BufferFilePattern)
}

// remakeDir makes dir again, mode 0700, and checks that what is there now
// is a directory of this user's: another user may have made it first, in
// a directory every user can write to, to read the bodies or to plant a
// symlink.
func remakeDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("making the buffer directory again: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("making the buffer directory again: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("making the buffer directory again: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("buffer directory %s is no longer a directory", dir)
	}
	if !ownedByMe(fi) {
		return fmt.Errorf("buffer directory %s was made again by another user", dir)
	}
	return nil
}
