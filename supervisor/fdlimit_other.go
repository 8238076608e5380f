//go:build !unix

package supervisor

// openFileLimit is fallbackFileLimit where there is no RLIMIT_NOFILE
// (Windows, whose handle limit is far higher).
func openFileLimit() uint64 { return fallbackFileLimit }
