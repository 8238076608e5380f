//go:build unix

package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// within runs f and fails t if it has not returned after d: a FIFO read
// blocks for ever.
func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still blocked after %s", d)
		return nil
	}
}

// A FIFO at --tls-cert or --tls-key blocked `up`, and later the SIGHUP
// reload and `restart`, for ever; now each refuses it at once, naming it.
func TestTLSFileMustBeRegular(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testutil.WriteSelfSigned(t, dir, "one", 1)
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, maxPEMFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(certFile, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"FIFO cert", fifo, keyFile, "--tls-cert " + fifo + ": a FIFO (named pipe), not a regular file: give the PEM file itself"},
		{"FIFO key", certFile, fifo, "--tls-key " + fifo + ": a FIFO (named pipe), not a regular file: give the PEM file itself"},
		{"directory", dir, keyFile, "--tls-cert " + dir + ": a directory, not a regular file: give the PEM file itself"},
		{"device", certFile, "/dev/zero", "--tls-key /dev/zero: a device, not a regular file: give the PEM file itself"},
		{"too large", big, keyFile, "--tls-cert " + big + ": larger than 1024 KiB: not a PEM certificate or key"},
		{"symbolic link to a file", link, keyFile, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := TLSOptions{TLSCert: tc.cert, TLSKey: tc.key}
			err := within(t, 5*time.Second, func() error { _, err := o.resolveTLS(); return err })
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}

	// A reload, after the key was replaced by a FIFO, fails at once and
	// keeps the certificate being served.
	keyCopy := filepath.Join(dir, "key-copy.pem")
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyCopy, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := newCertificate(certFile, keyCopy)
	if err != nil {
		t.Fatal(err)
	}
	served := c.cur.Load()
	if err := os.Remove(keyCopy); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(keyCopy, 0o600); err != nil {
		t.Fatal(err)
	}
	err = within(t, 5*time.Second, c.reload)
	if err == nil || !strings.Contains(err.Error(), "a FIFO (named pipe)") {
		t.Fatalf("reload = %v, want a refusal of the FIFO", err)
	}
	if c.cur.Load() != served {
		t.Fatal("a failed reload replaced the certificate being served")
	}
}
