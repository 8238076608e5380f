package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestTLSFlagsGoTogether(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testutil.WriteSelfSigned(t, dir, "one", 1)
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"neither", "", "", ""},
		{"both", certFile, keyFile, ""},
		{"cert only", certFile, "", "--tls-cert needs --tls-key"},
		{"key only", "", keyFile, "--tls-key needs --tls-cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := TLSOptions{TLSCert: tc.cert, TLSKey: tc.key}
			_, err := o.resolveTLS()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestTLSKeyPairErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testutil.WriteSelfSigned(t, dir, "one", 1)
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	_, otherKey := testutil.WriteSelfSigned(t, other, "two", 2)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing cert", missing, keyFile, "--tls-cert " + missing + ": no such file or directory"},
		{"missing key", certFile, missing, "--tls-key " + missing + ": no such file or directory"},
		{"mismatched", certFile, otherKey, "--tls-key " + otherKey + " does not match the certificate in --tls-cert " + certFile},
		{"swapped", keyFile, certFile, "--tls-cert " + keyFile + ": no PEM CERTIFICATE block in it"},
		{"key is a cert", certFile, certFile, "--tls-key " + certFile + ": no PEM PRIVATE KEY block in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadKeyPair(tc.cert, tc.key)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is more than one line: %q", err)
			}
		})
	}
}

func TestCertificateReloadKeepsTheOldOneOnError(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testutil.WriteSelfSigned(t, dir, "one", 1)
	c, err := newCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 {
		got, _ := c.getCertificate(nil)
		return got.Leaf.SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	testutil.WriteSelfSigned(t, dir, "two", 2)
	if err := c.reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != 2 {
		t.Fatalf("after a reload: serial %d, want 2", got)
	}
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = c.reload()
	if err == nil || !strings.Contains(err.Error(), "--tls-key "+keyFile) {
		t.Fatalf("reload of a broken key: %v, want an error naming --tls-key %s", err, keyFile)
	}
	if got := serial(); got != 2 {
		t.Fatalf("after a failed reload: serial %d, want the previous certificate's, 2", got)
	}
}
