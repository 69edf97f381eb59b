package main

// A session wraps one tss-lib party (ECDSA keygen, signing or resharing) for one ceremony.
//
// Event loop (tss-lib issue #213): rounds write to the party's `out` and `end` channels while
// holding the party mutex, so one goroutine per session drains both channels into a bounded
// event queue; `Update` is only ever called from the caller's thread (deliver), never from the
// draining goroutine. The caller polls the queue with nextEvent(timeout).

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/bnb-chain/tss-lib/v3/common"
	"github.com/bnb-chain/tss-lib/v3/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v3/tss"
	"github.com/btcsuite/btcd/btcec/v2"
)

const (
	kindKeygen  = "keygen"
	kindSigning = "signing"
	kindReshare = "resharing"
)

// Event kinds as returned by tss_session_next_event.
const (
	eventNone     = 0
	eventOutgoing = 1
	eventDone     = 2
	eventError    = 3
)

type event struct {
	kind    int
	header  map[string]any
	payload []byte
}

// shimError is what crosses the C ABI as an error: tss-lib's task, round and culprits, or
// the shim's own reason (task "shim").
type shimError struct {
	Task     string   `json:"task"`
	Round    int      `json:"round"`
	Culprits []string `json:"culprits"`
	Message  string   `json:"message"`
}

func (e *shimError) Error() string { return e.Message }

func shimErr(task string, culprits []string, format string, args ...any) *shimError {
	if culprits == nil {
		culprits = []string{}
	}
	return &shimError{Task: task, Round: 0, Culprits: culprits, Message: fmt.Sprintf(format, args...)}
}

// fromTss converts tss-lib's error; note a nil *tss.Error must be checked before this call
// (a nil *tss.Error in an error interface is not nil).
func fromTss(e *tss.Error, extraCulprits ...string) *shimError {
	out := &shimError{Task: e.Task(), Round: e.Round(), Culprits: []string{}, Message: e.Error()}
	seen := map[string]bool{}
	for _, c := range e.Culprits() {
		if c != nil && !seen[c.Id] {
			out.Culprits = append(out.Culprits, c.Id)
			seen[c.Id] = true
		}
	}
	for _, c := range extraCulprits {
		if !seen[c] {
			out.Culprits = append(out.Culprits, c)
			seen[c] = true
		}
	}
	if out.Task == "" {
		out.Task = "shim"
	}
	return out
}

type session struct {
	kind     string
	party    tss.Party
	members  map[string]*tss.PartyID // every party this one may hear from (own sorted objects)
	self     string
	eventMax int

	mu      sync.Mutex
	events  []event
	failed  *shimError // set once: the session is dead, every later call reports it
	done    bool
	notify  chan struct{} // capacity 1: "the queue changed"
	quit    chan struct{}
	started bool
	inbox   chan tss.ParsedMessage // checked messages waiting for Update (bounded by eventMax)
	deliver sync.Mutex             // serialises start and the checks of deliver
}

func newSession(kind, self string, members map[string]*tss.PartyID, eventMax int) *session {
	return &session{
		kind: kind, self: self, members: members, eventMax: eventMax,
		notify: make(chan struct{}, 1), quit: make(chan struct{}),
		inbox: make(chan tss.ParsedMessage, eventMax),
	}
}

func (s *session) push(ev event) {
	s.mu.Lock()
	if s.failed == nil {
		if len(s.events) >= s.eventMax {
			// The bound is a safety net: a caller that stops polling must not grow memory
			// without limit. The session fails, naming no culprit (it is the caller's fault).
			s.failed = shimErr(s.kind, nil, "event queue full (%d events): the caller stopped polling", s.eventMax)
		} else {
			s.events = append(s.events, ev)
		}
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *session) fail(e *shimError) {
	s.mu.Lock()
	if s.failed == nil {
		s.failed = e
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

var roundRe = regexp.MustCompile(`Round(\d+)`)

func roundOf(msgType string) int {
	m := roundRe.FindStringSubmatch(msgType)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// drain runs on its own goroutine: it only moves messages from tss-lib's channels into the
// event queue and never calls into the party.
func drain[T any](s *session, out <-chan tss.Message, end <-chan T, onEnd func(T) (event, error)) {
	defer func() {
		if r := recover(); r != nil {
			s.fail(shimErr(s.kind, nil, "panic in the event loop: %v", r))
		}
	}()
	for {
		select {
		case <-s.quit:
			return
		case msg := <-out:
			wire, routing, err := msg.WireBytes()
			if err != nil {
				s.fail(shimErr(s.kind, nil, "could not serialise an outgoing message: %v", err))
				continue
			}
			var to []string
			if routing.To != nil {
				to = make([]string, 0, len(routing.To))
				for _, p := range routing.To {
					to = append(to, p.Id)
				}
			}
			toOld, toNew := false, false
			if s.kind == kindReshare {
				toOld = routing.IsToOldCommittee || routing.IsToOldAndNewCommittees
				toNew = !routing.IsToOldCommittee || routing.IsToOldAndNewCommittees
			}
			s.push(event{kind: eventOutgoing, header: map[string]any{
				"type": "outgoing", "round": roundOf(msg.Type()), "broadcast": routing.IsBroadcast,
				"to": to, "to_old": toOld, "to_new": toNew,
			}, payload: wire})
		case res := <-end:
			ev, err := onEnd(res)
			if err != nil {
				s.fail(shimErr(s.kind, nil, "%v", err))
				return
			}
			s.mu.Lock()
			s.done = true
			s.mu.Unlock()
			s.push(ev)
			return
		}
	}
}

func (s *session) start() *shimError {
	s.deliver.Lock()
	defer s.deliver.Unlock()
	if s.started {
		return shimErr(s.kind, nil, "session already started")
	}
	s.started = true
	if err := s.party.Start(); err != nil {
		e := fromTss(err)
		s.fail(e)
		return e
	}
	// Messages that arrived before Start (a peer started first) wait in the inbox.
	go s.updateLoop()
	return nil
}

// updateLoop is the only caller of Update after Start: a round's computation runs here, on
// its own goroutine, so deliver returns at once (the caller's thread never waits on a round,
// and several senders never queue behind one another's computations). It is not the
// draining goroutine, which must stay free to empty tss-lib's channels (issue #213).
func (s *session) updateLoop() {
	defer func() {
		if r := recover(); r != nil {
			s.fail(shimErr(s.kind, nil, "panic in Update: %v", r))
		}
	}()
	for {
		select {
		case <-s.quit:
			return
		case msg := <-s.inbox:
			s.mu.Lock()
			stop := s.failed != nil || s.done
			s.mu.Unlock()
			if stop {
				continue
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						s.fail(shimErr(s.kind, []string{msg.GetFrom().Id}, "panic on a message from %q: %v", msg.GetFrom().Id, r))
					}
				}()
				s.updateParsed(msg)
			}()
		}
	}
}

func (s *session) updateParsed(msg tss.ParsedMessage) *shimError {
	if _, terr := s.party.Update(msg); terr != nil {
		e := fromTss(terr)
		if len(e.Culprits) == 0 {
			// tss-lib names nobody for some malformed contents; the authenticated sender of
			// the message that caused it is the culprit.
			e.Culprits = []string{msg.GetFrom().Id}
		}
		s.fail(e)
		return e
	}
	return nil
}

// update checks one wire message and queues it for the party. Rejections that leave
// tss-lib's state untouched (a non-member sender, bytes that do not parse) are returned at
// once without failing the session; a protocol violation found by tss-lib while it processes
// the message fails the session, naming the culprits, and is reported by nextEvent.
func (s *session) update(wire []byte, from string, isBroadcast bool) *shimError {
	s.deliver.Lock()
	defer s.deliver.Unlock()
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	if failed != nil {
		return failed
	}
	pid, ok := s.members[from]
	if !ok {
		return shimErr(s.kind, []string{from}, "message from %q, who is not a member of this session", from)
	}
	if from == s.self {
		return shimErr(s.kind, []string{from}, "message claims to come from this party itself")
	}
	msg, err := tss.ParseWireMessage(wire, pid, isBroadcast)
	if err != nil {
		return shimErr(s.kind, []string{from}, "message from %q does not parse: %v", from, err)
	}
	if msg.GetFrom() == nil || msg.Content() == nil || !msg.ValidateBasic() {
		return shimErr(s.kind, []string{from}, "message from %q failed basic validation", from)
	}
	select {
	case s.inbox <- msg:
		return nil
	default:
		return shimErr(s.kind, []string{from}, "inbox full (%d messages): message from %q dropped", s.eventMax, from)
	}
}

func (s *session) nextEvent(timeout time.Duration) event {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		if len(s.events) > 0 {
			ev := s.events[0]
			s.events[0] = event{}
			s.events = s.events[1:]
			s.mu.Unlock()
			return ev
		}
		if s.failed != nil {
			f := s.failed
			s.mu.Unlock()
			return event{kind: eventError, header: errHeader(f)}
		}
		s.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			return event{kind: eventNone}
		}
		t := time.NewTimer(left)
		select {
		case <-s.notify:
			t.Stop()
		case <-t.C:
		}
	}
}

func (s *session) waitingFor() []string {
	out := []string{}
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done || !s.started {
		return out
	}
	for _, p := range s.party.WaitingFor() {
		out = append(out, p.Id)
	}
	return out
}

func (s *session) close() {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
}

func errHeader(e *shimError) map[string]any {
	return map[string]any{"type": "error", "task": e.Task, "round": e.Round, "culprits": e.Culprits, "message": e.Message}
}

// encodeEvent frames an event for the C ABI: 4-byte big-endian header length, the JSON
// header, then the raw payload (wire bytes or result bytes).
func encodeEvent(ev event) []byte {
	h, err := json.Marshal(ev.header)
	if err != nil {
		panic(err)
	}
	out := make([]byte, 4+len(h)+len(ev.payload))
	binary.BigEndian.PutUint32(out, uint32(len(h)))
	copy(out[4:], h)
	copy(out[4+len(h):], ev.payload)
	return out
}

// ---- configuration shared by the three session kinds ----

type partyConf struct {
	ID  string `json:"id"`
	Key string `json:"key"` // decimal sort key (positive)
}

func sortedIDs(ps []partyConf) (tss.SortedPartyIDs, map[string]*tss.PartyID, error) {
	if len(ps) == 0 {
		return nil, nil, errors.New("no parties")
	}
	un := make(tss.UnSortedPartyIDs, 0, len(ps))
	byID := map[string]*tss.PartyID{}
	keys := map[string]bool{}
	for _, p := range ps {
		k, ok := new(big.Int).SetString(p.Key, 10)
		if !ok || k.Sign() <= 0 {
			return nil, nil, fmt.Errorf("party %q: key must be a positive decimal integer", p.ID)
		}
		if p.ID == "" {
			return nil, nil, errors.New("empty party id")
		}
		if _, dup := byID[p.ID]; dup {
			return nil, nil, fmt.Errorf("party %q listed twice", p.ID)
		}
		if keys[k.String()] {
			return nil, nil, fmt.Errorf("party %q: key used by another party", p.ID)
		}
		keys[k.String()] = true
		pid := tss.NewPartyID(p.ID, p.ID, k)
		un = append(un, pid)
		byID[p.ID] = pid
	}
	return tss.SortPartyIDs(un), byID, nil
}

// sessionNonce binds tss-lib's SSID to our session id (v3 session-nonce binding), so that a
// message replayed from another session fails its proofs.
func sessionNonce(kind string, sessionID []byte) *big.Int {
	h := sha256.New()
	h.Write([]byte("custody-node/tss-session-nonce/v1\x00"))
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(sessionID)
	return new(big.Int).SetBytes(h.Sum(nil))
}

func compressed(x, y *big.Int) ([]byte, error) {
	var fx, fy btcec.FieldVal
	if fx.SetByteSlice(x.Bytes()) || fy.SetByteSlice(y.Bytes()) {
		return nil, errors.New("coordinate overflows the field")
	}
	pk := btcec.NewPublicKey(&fx, &fy)
	if !pk.IsOnCurve() {
		return nil, errors.New("point is not on secp256k1")
	}
	return pk.SerializeCompressed(), nil
}

func keygenDone(save *keygen.LocalPartySaveData) (event, error) {
	b, err := json.Marshal(save)
	if err != nil {
		return event{}, err
	}
	pub, err := compressed(save.ECDSAPub.X(), save.ECDSAPub.Y())
	if err != nil {
		return event{}, err
	}
	return event{kind: eventDone, header: map[string]any{"type": "done", "result": "key", "public_key": fmt.Sprintf("%x", pub)}, payload: b}, nil
}

func signatureDone(sig *common.SignatureData) (event, error) {
	return event{kind: eventDone, header: map[string]any{
		"type": "done", "result": "signature",
		"r": fmt.Sprintf("%x", sig.R), "s": fmt.Sprintf("%x", sig.S),
		"recovery": int(sig.SignatureRecovery[0]), "m": fmt.Sprintf("%x", sig.M),
	}}, nil
}
