// Package sample is the examples' test image: sample.jpg, a synthetic
// studio portrait (600x800, 164 KiB, about the size of the original load
// test's photo), embedded so that the client works from any directory.
// `go run gen.go` in this directory redraws it.
package sample

import _ "embed"

// JPEG is sample.jpg's bytes.
//
//go:embed sample.jpg
var JPEG []byte
