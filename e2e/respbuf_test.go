package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// slowDownload asks the instance for size bytes on a raw connection with a
// small receive buffer, and reads them at rate bytes a second in a
// goroutine. It returns when the response headers have arrived; read
// reports how many bytes the client has taken, and done receives the
// body's end (nil when every byte arrived as fakemodel sent it).
func slowDownload(t *testing.T, in *instance, size, rate int) (read func() int, done <-chan error) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(in.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /download?size=%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
	br := bufio.NewReaderSize(conn, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(size) {
		t.Fatalf("download: %s, Content-Length %d; want 200 and %d", resp.Status, resp.ContentLength, size)
	}
	var n atomic.Int64
	errc := make(chan error, 1)
	go func() {
		start := time.Now()
		buf := make([]byte, 8<<10)
		for total := 0; total < size; {
			// Keep to rate: the next read waits until the bytes so far are due.
			time.Sleep(time.Until(start.Add(time.Duration(float64(total) / float64(rate) * float64(time.Second)))))
			k, err := resp.Body.Read(buf[:min(len(buf), size-total)])
			for i := 0; i < k; i++ {
				if buf[i] != byte((total+i)%251) {
					errc <- fmt.Errorf("byte %d is %d, fakemodel sent %d", total+i, buf[i], (total+i)%251)
					return
				}
			}
			total += k
			n.Store(int64(total))
			if err != nil && total < size {
				errc <- fmt.Errorf("after %d of %d bytes: %w", total, size, err)
				return
			}
		}
		errc <- nil
	}()
	return func() int { return int(n.Load()) }, errc
}

// inflight returns the replicas' requests in flight, asked over the
// control socket directly: a status command takes too long to time this.
func inflight(t *testing.T, ctl *control.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ctl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range st.Replicas {
		n += r.Inflight
	}
	return n
}

// TestSlowClientFreesReplica is the slow-download case at its target: a
// 5 MiB response to a client reading at 1 MB/s. Before, the replica was
// held until the client had nearly all of it (a 20 MiB download held its
// slot for 13 of 17 s); with the response read ahead (--response-buffer,
// 1MiB per connection in memory, the rest in the buffer directory) the
// replica is free within 0.5 s of the request, while the client has most
// of the download still to come, and the client gets every byte. With --response-buffer 0 the replica is held as before
// (measured: a 5 MiB download held it 1.3 s, a 20 MiB one 17 s of 20).
func TestSlowClientFreesReplica(t *testing.T) {
	// Not parallel: it times when the replica is freed, so it runs alone.
	const size, rate = 5 << 20, 1 << 20
	t.Run("default", func(t *testing.T) {
		in := start(t, 1, "--", fakemodel)
		in.waitReady(1)
		ctl, err := control.Connect(in.home, "")
		if err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		read, done := slowDownload(t, in, size, rate)
		var freed time.Duration
		for {
			if inflight(t, ctl) == 0 {
				freed = time.Since(sent)
				break
			}
			if time.Since(sent) > 10*time.Second {
				t.Fatalf("the replica still holds the download after %s; the client has read %d bytes", time.Since(sent), read())
			}
			time.Sleep(5 * time.Millisecond)
		}
		got := read()
		t.Logf("replica free %s after the request was sent; the client had read %d of %d bytes", freed.Round(time.Millisecond), got, size)
		if freed > 500*time.Millisecond {
			t.Errorf("replica free %s after the request, want within 500ms", freed.Round(time.Millisecond))
		}
		if got > size/2 {
			t.Errorf("the client had read %d of %d bytes when the replica was freed; not a slow client", got, size)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if took := time.Since(sent); took < 3*time.Second {
			t.Errorf("the download took %s at 1 MB/s", took)
		}
	})
	t.Run("response-buffer 0", func(t *testing.T) {
		in := start(t, 1, "--response-buffer", "0", "--", fakemodel)
		in.waitReady(1)
		ctl, err := control.Connect(in.home, "")
		if err != nil {
			t.Fatal(err)
		}
		// 20 MiB: the kernel's socket buffers take a few MiB of a
		// download off the replica's hands (5 MiB was held 1.3 s).
		read, _ := slowDownload(t, in, 20<<20, rate)
		held := time.Now().Add(time.Second)
		for time.Now().Before(held) {
			if inflight(t, ctl) != 1 {
				t.Fatalf("with --response-buffer 0 the replica was freed when the client had read %d of 20 MiB", read())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
