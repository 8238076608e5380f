package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTLSFlagsFromTheCommandLineAndTheConfigFile(t *testing.T) {
	got, err := parseUpArgs("--tls-cert", "c.pem", "--tls-key", "k.pem")
	if err != nil {
		t.Fatal(err)
	}
	if got.TLSCert != "c.pem" || got.TLSKey != "k.pem" {
		t.Errorf("flags: cert %q, key %q; want c.pem, k.pem", got.TLSCert, got.TLSKey)
	}
	file := filepath.Join(t.TempDir(), "mattingctl.yaml")
	if err := os.WriteFile(file, []byte("tls-cert: /etc/ssl/proxy.pem\ntls-key: /etc/ssl/proxy.key\ncommand: python3 app.py\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = parseUpArgs("-f", file)
	if err != nil {
		t.Fatal(err)
	}
	if got.TLSCert != "/etc/ssl/proxy.pem" || got.TLSKey != "/etc/ssl/proxy.key" {
		t.Errorf("config file: cert %q, key %q; want /etc/ssl/proxy.pem, /etc/ssl/proxy.key", got.TLSCert, got.TLSKey)
	}
}
