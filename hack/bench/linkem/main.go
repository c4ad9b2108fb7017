// Command linkem is the delay half of the transport benchmark's shaped link
// (hack/bench-transport.sh link): this machine's kernel has no sch_netem
// (CONFIG_NET_SCH_NETEM is not set, and it loads no modules), so the rate is
// shaped by tc tbf on both ends and the one-way delay is added here.
//
//	linkem -a HOSTDEV -b NSDEV -delay 5ms
//
// It creates two TUN devices with virtio-net headers and TSO/checksum offload
// (so TCP hands over up to 64 KiB segments, as over a veth, instead of one
// packet per 1500 bytes) and copies every packet read from one to the other
// after -delay, in order, in both directions: a point-to-point wire. It
// prints "ready" once both exist; the caller moves -b into the registry's
// network namespace and addresses both ends. The devices are not persistent:
// they disappear when linkem exits (SIGTERM, SIGINT, or its parent's death).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	vnetHdr = 10 // struct virtio_net_hdr
	maxPkt  = vnetHdr + 65535
)

type packet struct {
	due time.Time
	buf *[]byte
	n   int
}

func openTun(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var ifr [unix.IFNAMSIZ + 64]byte
	copy(ifr[:unix.IFNAMSIZ-1], name)
	*(*uint16)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %s: %w", name, e)
	}
	off := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETOFFLOAD, uintptr(off)); e != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETOFFLOAD %s: %w", name, e)
	}
	return fd, nil
}

func main() {
	a := flag.String("a", "", "host-side TUN device name")
	b := flag.String("b", "", "namespace-side TUN device name")
	delay := flag.Duration("delay", 0, "one-way delay added in each direction")
	flag.Parse()
	ppid := os.Getppid()
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0)
	if os.Getppid() != ppid {
		os.Exit(1)
	}
	if *a == "" || *b == "" {
		fmt.Fprintln(os.Stderr, "usage: linkem -a HOSTDEV -b NSDEV -delay 5ms")
		os.Exit(2)
	}
	fa, err := openTun(*a)
	if err != nil {
		fmt.Fprintln(os.Stderr, "linkem:", err)
		os.Exit(1)
	}
	fb, err := openTun(*b)
	if err != nil {
		fmt.Fprintln(os.Stderr, "linkem:", err)
		os.Exit(1)
	}
	pool := sync.Pool{New: func() any { b := make([]byte, maxPkt); return &b }}
	pipe := func(src, dst int) {
		q := make(chan packet, 16384)
		go func() {
			for p := range q {
				if d := time.Until(p.due); d > 0 {
					time.Sleep(d)
				}
				// a full or vanished peer drops the packet, as a wire would
				_, _ = unix.Write(dst, (*p.buf)[:p.n])
				pool.Put(p.buf)
			}
		}()
		for {
			buf := pool.Get().(*[]byte)
			n, err := unix.Read(src, *buf)
			if err != nil {
				if err == unix.EINTR || err == unix.EAGAIN {
					pool.Put(buf)
					continue
				}
				fmt.Fprintln(os.Stderr, "linkem: read:", err)
				os.Exit(1)
			}
			q <- packet{due: time.Now().Add(*delay), buf: buf, n: n}
		}
	}
	go pipe(fa, fb)
	go pipe(fb, fa)
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
