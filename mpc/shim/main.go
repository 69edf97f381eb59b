// Package main is the C ABI over tss-lib, built with `go build -buildmode=c-shared` into
// mpc/_native/libtss.so and loaded by mpc/_native/__init__.py (cffi, ABI mode) only.
//
// Conventions of every export:
//   - bytes in, bytes out: results are written to *out / *outLen in a buffer allocated with
//     C.malloc, which the caller frees with tss_free;
//   - a status int: 0 = ok, otherwise *out holds a JSON error {task, round, culprits, message};
//   - `defer recover()`: tss-lib panics on some bad input, and a panic must never cross cgo;
//   - nothing blocks while tss-lib holds a party lock (see session.go).
//
// Go's runtime does not survive fork(): a process that has loaded this library must never
// fork (multiprocessing uses "spawn"; subprocesses are fork+exec).
package main

/*
#include <stdint.h>
#include <stdlib.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"github.com/bnb-chain/tss-lib/v3/ecdsa/keygen"
	golog "github.com/ipfs/go-log"
)

const (
	statusOK    = 0
	statusError = 1
)

func init() {
	// tss-lib logs every round at INFO through ipfs/go-log; only errors are of interest.
	_ = golog.SetLogLevel("tss-lib", "error")
}

var (
	handlesMu sync.Mutex
	handles   = map[uint64]*session{}
	nextID    uint64
)

func lookup(h C.uint64_t) (*session, bool) {
	handlesMu.Lock()
	defer handlesMu.Unlock()
	s, ok := handles[uint64(h)]
	return s, ok
}

func put(out **C.uchar, outLen *C.size_t, b []byte) {
	p := C.malloc(C.size_t(len(b) + 1))
	if p == nil {
		panic("malloc failed")
	}
	if len(b) > 0 {
		copy(unsafe.Slice((*byte)(p), len(b)), b)
	}
	*out = (*C.uchar)(p)
	*outLen = C.size_t(len(b))
}

func putErr(out **C.uchar, outLen *C.size_t, e *shimError) C.int {
	b, _ := json.Marshal(e)
	put(out, outLen, b)
	return statusError
}

func goBytes(p *C.uchar, n C.size_t) []byte {
	if n == 0 {
		return []byte{}
	}
	return C.GoBytes(unsafe.Pointer(p), C.int(n))
}

// recovered turns a panic into an error status for the export that deferred it.
func recovered(task string, out **C.uchar, outLen *C.size_t, status *C.int) {
	if r := recover(); r != nil {
		*status = putErr(out, outLen, shimErr(task, nil, "panic: %v", r))
	}
}

//export tss_free
func tss_free(p *C.uchar) {
	C.free(unsafe.Pointer(p))
}

//export tss_version
func tss_version(out **C.uchar, outLen *C.size_t) (status C.int) {
	defer recovered("shim", out, outLen, &status)
	v := map[string]string{"go": "", "tss_lib": ""}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v["go"] = bi.GoVersion
		for _, d := range bi.Deps {
			if d.Path == "github.com/bnb-chain/tss-lib/v3" {
				v["tss_lib"] = d.Version
			}
		}
	}
	b, _ := json.Marshal(v)
	put(out, outLen, b)
	return statusOK
}

// tss_session_new creates a session of `kind` ("keygen", "signing", "resharing") from a
// JSON configuration. Returns the handle (> 0), or 0 with the error in *out.
//
//export tss_session_new
func tss_session_new(kind *C.char, cfg *C.uchar, cfgLen C.size_t, out **C.uchar, outLen *C.size_t) (handle C.uint64_t) {
	defer func() {
		if r := recover(); r != nil {
			putErr(out, outLen, shimErr("shim", nil, "panic: %v", r))
			handle = 0
		}
	}()
	k := C.GoString(kind)
	conf := goBytes(cfg, cfgLen)
	var s *session
	var err error
	switch k {
	case kindKeygen:
		s, err = newKeygen(conf)
	case kindSigning:
		s, err = newSigning(conf)
	case kindReshare:
		s, err = newResharing(conf)
	default:
		err = fmt.Errorf("unknown session kind %q", k)
	}
	if err == nil && s.eventMax < 1 {
		err = fmt.Errorf("event_max must be positive")
	}
	if err != nil {
		putErr(out, outLen, shimErr(k, nil, "%v", err))
		return 0
	}
	handlesMu.Lock()
	nextID++
	id := nextID
	handles[id] = s
	handlesMu.Unlock()
	put(out, outLen, nil)
	return C.uint64_t(id)
}

//export tss_session_start
func tss_session_start(h C.uint64_t, out **C.uchar, outLen *C.size_t) (status C.int) {
	defer recovered("shim", out, outLen, &status)
	s, ok := lookup(h)
	if !ok {
		return putErr(out, outLen, shimErr("shim", nil, "unknown session handle"))
	}
	if e := s.start(); e != nil {
		return putErr(out, outLen, e)
	}
	put(out, outLen, nil)
	return statusOK
}

// tss_session_deliver hands one incoming wire message to the party. The sender and the
// broadcast flag travel beside the bytes (tss-lib does not put them in the wire bytes).
//
//export tss_session_deliver
func tss_session_deliver(h C.uint64_t, wire *C.uchar, wireLen C.size_t, from *C.char, isBroadcast C.int, out **C.uchar, outLen *C.size_t) (status C.int) {
	s, ok := lookup(h)
	task := "shim"
	if ok {
		task = s.kind
	}
	defer func() {
		if r := recover(); r != nil {
			e := shimErr(task, []string{C.GoString(from)}, "panic on a message from %q: %v", C.GoString(from), r)
			if s != nil {
				s.fail(e)
			}
			status = putErr(out, outLen, e)
		}
	}()
	if !ok {
		return putErr(out, outLen, shimErr("shim", nil, "unknown session handle"))
	}
	if e := s.update(goBytes(wire, wireLen), C.GoString(from), isBroadcast != 0); e != nil {
		return putErr(out, outLen, e)
	}
	put(out, outLen, nil)
	return statusOK
}

// tss_session_next_event waits up to timeoutMs for the next event. Returns 0 (none before the
// deadline), 1 (outgoing message), 2 (done), 3 (the session failed), or -1 (bad call, error
// in *out). *out holds the framed event: 4-byte big-endian header length, JSON header, payload.
//
//export tss_session_next_event
func tss_session_next_event(h C.uint64_t, timeoutMs C.int64_t, out **C.uchar, outLen *C.size_t) (status C.int) {
	defer func() {
		if r := recover(); r != nil {
			putErr(out, outLen, shimErr("shim", nil, "panic: %v", r))
			status = -1
		}
	}()
	s, ok := lookup(h)
	if !ok {
		putErr(out, outLen, shimErr("shim", nil, "unknown session handle"))
		return -1
	}
	ev := s.nextEvent(time.Duration(timeoutMs) * time.Millisecond)
	if ev.kind == eventNone {
		put(out, outLen, nil)
		return eventNone
	}
	put(out, outLen, encodeEvent(ev))
	return C.int(ev.kind)
}

//export tss_session_waiting_for
func tss_session_waiting_for(h C.uint64_t, out **C.uchar, outLen *C.size_t) (status C.int) {
	defer recovered("shim", out, outLen, &status)
	s, ok := lookup(h)
	if !ok {
		return putErr(out, outLen, shimErr("shim", nil, "unknown session handle"))
	}
	b, _ := json.Marshal(s.waitingFor())
	put(out, outLen, b)
	return statusOK
}

//export tss_session_free
func tss_session_free(h C.uint64_t) {
	defer func() { _ = recover() }()
	handlesMu.Lock()
	s, ok := handles[uint64(h)]
	delete(handles, uint64(h))
	handlesMu.Unlock()
	if ok {
		s.close()
	}
}

// tss_preparams_generate finds safe primes and a Paillier key (tens of seconds). The result
// is secret (JSON of tss-lib's LocalPreParams).
//
//export tss_preparams_generate
func tss_preparams_generate(timeoutMs C.int64_t, concurrency C.int, out **C.uchar, outLen *C.size_t) (status C.int) {
	defer recovered("preparams", out, outLen, &status)
	if concurrency < 1 {
		return putErr(out, outLen, shimErr("preparams", nil, "concurrency must be positive"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeoutMs)*time.Millisecond)
	defer cancel()
	pp, err := keygen.GeneratePreParamsWithContext(ctx, int(concurrency))
	if err != nil {
		return putErr(out, outLen, shimErr("preparams", nil, "%v", err))
	}
	b, err := json.Marshal(pp)
	if err != nil {
		return putErr(out, outLen, shimErr("preparams", nil, "%v", err))
	}
	put(out, outLen, b)
	return statusOK
}

// tss_preparams_check validates pre-parameters read back from storage.
//
//export tss_preparams_check
func tss_preparams_check(buf *C.uchar, bufLen C.size_t, out **C.uchar, outLen *C.size_t) (status C.int) {
	defer recovered("preparams", out, outLen, &status)
	if _, err := parsePreParams(goBytes(buf, bufLen)); err != nil {
		return putErr(out, outLen, shimErr("preparams", nil, "%v", err))
	}
	put(out, outLen, nil)
	return statusOK
}

func main() {}
