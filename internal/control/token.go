package control

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"os"
	"path/filepath"
)

// The admin token is what the dashboard's actions need (Jupyter's token
// file): generated at start unless --admin-token gives one, kept in the
// state directory next to the control socket, readable by its owner only,
// and removed at a clean stop. `mattingctl dashboard` asks the control
// socket for it rather than reading the file: the socket also says where
// the dashboard is, and cannot be stale after a kill -9.

// TokenPath returns the admin token file of instance name in dir.
func TokenPath(dir, name string) string { return filepath.Join(dir, name+".token") }

// OpenerPath returns the page `mattingctl dashboard --open` hands the
// browser in dir: a redirect to the URL with the token, so that the token
// is never on a command line, where other users could read it (ps).
func OpenerPath(dir, name string) string { return filepath.Join(dir, name+".dashboard.html") }

// tokenBytes is the random part of a generated token: 128 bits, written
// as 32 hex digits.
const tokenBytes = 16

// NewToken returns a fresh admin token: 32 hex digits from crypto/rand.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating the admin token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// WriteToken writes token to instance name's token file in dir, mode
// 0600, replacing a file left by a killed instance. dir is the state
// directory, which Listen has checked: no other user can change it.
func WriteToken(dir, name, token string) error {
	return writePrivate(TokenPath(dir, name), []byte(token+"\n"))
}

// WriteOpener writes the page that redirects to url (OpenerPath), mode
// 0600, and returns its path.
func WriteOpener(dir, name, url string) (string, error) {
	path := OpenerPath(dir, name)
	url = html.EscapeString(url)
	page := fmt.Sprintf("<!doctype html>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"0;url=%s\">\n"+
		"<title>mattingctl</title>\n<p><a href=\"%s\">Open the dashboard</a></p>\n", url, url)
	if err := writePrivate(path, []byte(page)); err != nil {
		return "", err
	}
	return path, nil
}

// RemoveToken removes instance name's token file and opener page from
// dir; files already gone are no error.
func RemoveToken(dir, name string) error {
	var errs []error
	for _, p := range []string{TokenPath(dir, name), OpenerPath(dir, name)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writePrivate writes data to path through a new file of mode 0600 in the
// same directory, renamed over path: a reader never sees a partial file,
// and a symbolic link at path is replaced, not followed.
func writePrivate(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600) // CreateTemp's mode already, whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
