package main

import (
	"encoding/json"
	"testing"
)

func TestSizedPayload(t *testing.T) {
	const image = "../examples/sample/sample.jpg" // go test runs in bench/
	b, err := sizedPayload(image, 1024)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Image, Bg string }
	if len(b) != 1024 || json.Unmarshal(b, &body) != nil || body.Bg != "[33, 150, 242]" || body.Image == "" {
		t.Errorf("sizedPayload(1024) = %d bytes: %.60s...", len(b), b)
	}
	if _, err := sizedPayload(image, 10); err == nil {
		t.Error("a 10-byte body, too small for the JSON around the image: no error")
	}
}
