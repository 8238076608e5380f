//go:build !unix

package supervisor

import "io/fs"

// checkPrivate is the Unix ownership check; elsewhere the temp directory
// is the user's own.
func checkPrivate(string, fs.FileInfo) error { return nil }
