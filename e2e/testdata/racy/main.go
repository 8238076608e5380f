// Command racy has a deliberate data race. The e2e tests build it with
// -race to check that a race report in a process's output fails the test
// that started the process. It lives under testdata so that ./... skips it.
package main

import "fmt"

func main() {
	n := 0
	done := make(chan struct{})
	// The goroutine's write and main's are not ordered by anything: the
	// race detector reports them whichever runs first.
	go func() {
		n++
		close(done)
	}()
	n++
	<-done
	fmt.Println("racy: n =", n)
}
