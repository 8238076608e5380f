package supervisor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// maxPEMFile bounds a certificate or key file: a chain of a dozen
// certificates is a few tens of KiB.
const maxPEMFile = 1 << 20

// readPEMFile reads a certificate or key file, which must be a regular
// file (a symbolic link to one is fine) of at most maxPEMFile bytes. A
// FIFO there blocked `up`, the SIGHUP reload and `restart` for ever, waiting
// for a writer; a device could be read without end. The error leaves out
// the path, which the caller names with its flag.
func readPEMFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, pathErr(err)
	}
	if err := checkRegular(fi); err != nil {
		return nil, err
	}
	// Non-blocking, in case it became a FIFO since: the open then returns
	// at once, and the check below refuses it.
	f, err := openNonblocking(path)
	if err != nil {
		return nil, pathErr(err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, pathErr(err)
	}
	if err := checkRegular(fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, pathErr(err)
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("larger than %d KiB: not a PEM certificate or key", maxPEMFile>>10)
	}
	return b, nil
}

// checkRegular says what fi is when it is not a regular file.
func checkRegular(fi fs.FileInfo) error {
	m := fi.Mode()
	if m.IsRegular() {
		return nil
	}
	what := "not a regular file"
	switch {
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "a FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeDevice != 0:
		what = "a device"
	}
	return errors.New(what + ", not a regular file: give the PEM file itself")
}
