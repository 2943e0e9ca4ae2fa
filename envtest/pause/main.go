// Command pause holds a Pod's namespaces on the test node, as the sandbox ("pause") container.
// No registry serves registry.k8s.io/pause here, so the node's runtime gets this one instead.
// It sleeps until SIGINT or SIGTERM and, as PID 1 of a Pod that shares its process namespace,
// reaps the orphans it inherits.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for received := range signals {
		if received != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
