package accesslog

import (
	"io"
	"testing"
	"time"
)

// BenchmarkFormat is the writing goroutine's cost per line.
func BenchmarkFormat(b *testing.B) {
	for _, f := range []struct {
		name   string
		format Format
	}{{"combined", Combined}, {"json", JSON}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = f.format.Append(buf[:0], &sample)
			}
		})
	}
}

// BenchmarkLog is a request's cost: handing a record over, from many
// goroutines at once, to a writer that keeps up (io.Discard).
func BenchmarkLog(b *testing.B) {
	l := New(Options{Path: Stdout, Stdout: io.Discard})
	if err := l.Start(); err != nil {
		b.Fatal(err)
	}
	defer l.Close(time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Log(sample)
		}
	})
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}
