package supervisor

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// resolveTLS checks --tls-cert and --tls-key: both or neither, and a
// pair that loads, which it returns; nil for neither. The paths are made
// absolute, so that a re-read finds the same files whatever the working
// directory is by then.
func (o *TLSOptions) resolveTLS() (*certificate, error) {
	switch {
	case o.TLSCert == "" && o.TLSKey == "":
		return nil, nil
	case o.TLSKey == "":
		return nil, fmt.Errorf("--tls-cert needs --tls-key: give both files, or neither")
	case o.TLSCert == "":
		return nil, fmt.Errorf("--tls-key needs --tls-cert: give both files, or neither")
	}
	for _, p := range []*string{&o.TLSCert, &o.TLSKey} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	return newCertificate(o.TLSCert, o.TLSKey)
}

// certificate is the proxy's TLS certificate, read from its files at
// start and again on reload. Connections handshake with whichever
// certificate is current; those open keep theirs.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func newCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload re-reads the pair. On error the current certificate stays.
func (c *certificate) reload() error {
	cert, err := loadKeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	c.cur.Store(cert)
	return nil
}

// getCertificate is the tls.Config's GetCertificate.
func (c *certificate) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// tlsConfig is the proxy port's TLS configuration over c.
func (c *certificate) tlsConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: c.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
		MinVersion:     tls.VersionTLS12,
	}
}

// loadKeyPair reads a PEM certificate (chain) and its private key, with
// errors that name the file at fault and its flag.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s: %v", certFile, err)
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-key %s: %v", keyFile, err)
	}
	if !hasPEM(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return nil, fmt.Errorf("--tls-cert %s: no PEM CERTIFICATE block in it", certFile)
	}
	if !hasPEM(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return nil, fmt.Errorf("--tls-key %s: no PEM PRIVATE KEY block in it", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	switch {
	case err == nil:
		return &cert, nil
	case strings.Contains(err.Error(), "does not match"):
		return nil, fmt.Errorf("--tls-key %s does not match the certificate in --tls-cert %s", keyFile, certFile)
	case strings.Contains(err.Error(), "private key"):
		return nil, fmt.Errorf("--tls-key %s: %v", keyFile, strings.TrimPrefix(err.Error(), "tls: "))
	default:
		return nil, fmt.Errorf("--tls-cert %s: %v", certFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
}

// hasPEM reports whether data holds a PEM block whose type passes want.
func hasPEM(data []byte, want func(string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if want(b.Type) {
			return true
		}
	}
}

// pathErr is err without the path a *fs.PathError repeats.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// reloadCertificate re-reads the proxy's TLS certificate, when it has
// one, and logs the outcome; it returns the error, for the restart
// command's answer. A failed re-read keeps the certificate being served.
func (s *Supervisor) reloadCertificate() error {
	cert := s.cfg().cert
	if cert == nil {
		return nil
	}
	if err := cert.reload(); err != nil {
		s.log.Error("TLS certificate not re-read; serving the previous one", "error", err)
		return err
	}
	leaf := cert.cur.Load().Leaf
	if leaf != nil {
		s.log.Info("TLS certificate re-read", "cert", cert.certFile, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	} else {
		s.log.Info("TLS certificate re-read", "cert", cert.certFile)
	}
	return nil
}
