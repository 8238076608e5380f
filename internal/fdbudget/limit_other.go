//go:build !unix

package fdbudget

// OpenFileLimit is fallbackFileLimit where there is no RLIMIT_NOFILE
// (Windows, whose handle limit is far higher).
func OpenFileLimit() uint64 { return fallbackFileLimit }
