package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
)

// A control socket is trusted only when the process at the other end runs
// as the same user as this one, or as root, and when it lives in a
// directory no other user can change, as ssh's StrictModes demands of
// ~/.ssh. Without both, another user could put a socket of their own at
// the path and answer `status` or `down` in the instance's place.

// UnsafeDirError reports a state directory, or one of its parents, that
// another user could change: its owner is not this user or root, or it is
// group- or world-writable without the sticky bit.
type UnsafeDirError struct {
	// Dir is the state directory; Path is the component found unsafe (Dir
	// itself or one of its parents).
	Dir, Path string
	// Owner is Path's owner; Mode its permissions.
	Owner int
	Mode  fs.FileMode
	// Writable is true when Path is group- or world-writable without the
	// sticky bit, false when it belongs to another user.
	Writable bool
}

func (e *UnsafeDirError) Error() string {
	what := "state directory " + e.Dir
	if e.Path != e.Dir {
		what = fmt.Sprintf("state directory %s: its parent %s", e.Dir, e.Path)
	}
	if e.Writable {
		return fmt.Sprintf("%s is writable by other users (mode %v, no sticky bit), so another user could replace the control socket; "+
			"run `chmod go-w %s` (or chmod 700) or set MATTINGCTL_HOME to a directory only you can write", what, e.Mode, e.Path)
	}
	return fmt.Sprintf("%s belongs to uid %d, not to you (uid %d) or root, so its owner could replace the control socket; "+
		"set MATTINGCTL_HOME to a directory of your own", what, e.Owner, os.Geteuid())
}

// CheckStateDir reports an *UnsafeDirError if dir or any directory above
// it could be changed by a user other than this one and root: owned by
// another user, or group- or world-writable without the sticky bit (a
// sticky directory such as /tmp lets no one rename or remove another's
// files). Symbolic links are resolved first. A dir that does not exist is
// reported as fs.ErrNotExist.
func CheckStateDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	me := os.Geteuid()
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("state directory %s: %w", dir, err)
		}
		if owner, ok := fileOwner(fi); ok {
			mode := fi.Mode()
			switch {
			case owner != me && owner != 0:
				return &UnsafeDirError{Dir: dir, Path: p, Owner: owner, Mode: mode.Perm()}
			case mode.Perm()&0o022 != 0 && mode&fs.ModeSticky == 0:
				return &UnsafeDirError{Dir: dir, Path: p, Owner: owner, Mode: mode.Perm(), Writable: true}
			}
		}
		if parent := filepath.Dir(p); parent == p {
			return nil
		}
	}
}

// trustedUID reports whether a peer running as uid may be trusted: the
// same user as this process, or root.
func trustedUID(uid int) bool { return uid == os.Geteuid() || uid == 0 }

// UntrustedPeerError reports a control socket whose other end runs as
// another user: an impostor, or another user's instance.
type UntrustedPeerError struct {
	Path string
	UID  int
}

// Is makes an UntrustedPeerError an ErrPermission: the instance is not
// this user's to reach.
func (e *UntrustedPeerError) Is(target error) bool { return target == ErrPermission }

func (e *UntrustedPeerError) Error() string {
	return fmt.Sprintf("refusing control socket %s: it is served by uid %d, not by you (uid %d) or root; "+
		"it is not your instance (remove it if it is left over, or set MATTINGCTL_HOME to a directory of your own)", e.Path, e.UID, os.Geteuid())
}

// checkPeer returns an *UntrustedPeerError if conn's other end runs as a
// user other than this one and root. Where the platform cannot tell the
// peer's uid, the owner of the socket file at path stands in for it.
func checkPeer(conn net.Conn, path string) error {
	uid, err := peerUID(conn)
	if errors.Is(err, errPeerCredUnsupported) {
		owner, ok := socketOwner(path)
		if !ok {
			return fmt.Errorf("control socket %s: cannot tell who serves it", path)
		}
		uid, err = owner, nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: reading the peer's uid: %w", path, err)
	}
	if !trustedUID(uid) {
		return &UntrustedPeerError{Path: path, UID: uid}
	}
	return nil
}

// errPeerCredUnsupported is peerUID's error where the platform offers no
// way to read a Unix socket peer's credentials.
var errPeerCredUnsupported = errors.New("peer credentials are not supported on this platform")

// trustedListener accepts only connections from this user or root; others
// are logged and closed before a byte is read from them.
type trustedListener struct {
	net.Listener
	log hclog.Logger
}

func (l trustedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		switch {
		case errors.Is(err, errPeerCredUnsupported):
			return c, nil // the socket's mode 0600 is the only check
		case err != nil:
			l.log.Warn("refused a control connection: cannot read its uid", "error", err)
		case !trustedUID(uid):
			l.log.Warn("refused a control connection from another user", "uid", uid)
		default:
			return c, nil
		}
		c.Close()
	}
}

// isPermission reports whether err is a permission error (EACCES, EPERM).
func isPermission(err error) bool {
	return errors.Is(err, fs.ErrPermission)
}

// socketOwner returns the uid that owns the file at path.
func socketOwner(path string) (int, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	return fileOwner(fi)
}

// ownerName describes path's owner as "uid N", for error messages.
func ownerName(path string) string {
	if uid, ok := socketOwner(path); ok {
		return fmt.Sprintf("uid %d", uid)
	}
	return "another user"
}
