// Command mpc_go is the baseline of bench/mpc_engine.py: the same tss-lib protocols (v3.0.0,
// same session nonce binding) driven directly in Go, all parties in one process, every
// message through its wire bytes (WireBytes -> ParseWireMessage -> Update), one goroutine per
// delivery as in tss-lib's own tests. It reads a JSON job on stdin and prints one JSON line
// per ceremony: {"ms": <wall-clock milliseconds>}.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/bnb-chain/tss-lib/v3/common"
	"github.com/bnb-chain/tss-lib/v3/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v3/ecdsa/signing"
	"github.com/bnb-chain/tss-lib/v3/tss"
	golog "github.com/ipfs/go-log"
)

type party struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

type job struct {
	Kind      string            `json:"kind"` // "sign" | "keygen"
	Parties   []party           `json:"parties"`
	Threshold int               `json:"threshold"`
	Keys      map[string]string `json:"keys"`      // sign: party id -> save-data JSON file
	PreParams map[string]string `json:"preparams"` // keygen: party id -> LocalPreParams JSON file
	Digest    string            `json:"digest"`
	Count     int               `json:"count"`
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpc_go:", err)
		os.Exit(1)
	}
}

// nonce is a fresh per-session nonce, as the binding derives one from each session id.
func nonce(kind string) *big.Int {
	sid := make([]byte, 32)
	_, err := rand.Read(sid)
	must(err)
	h := sha256.Sum256(append([]byte(kind), sid...))
	return new(big.Int).SetBytes(h[:])
}

// ids builds fresh sorted PartyIDs for one party's view (tss-lib mutates them).
func ids(ps []party) (tss.SortedPartyIDs, map[string]*tss.PartyID) {
	un := tss.UnSortedPartyIDs{}
	by := map[string]*tss.PartyID{}
	for _, p := range ps {
		k, _ := new(big.Int).SetString(p.Key, 10)
		pid := tss.NewPartyID(p.ID, p.ID, k)
		un = append(un, pid)
		by[p.ID] = pid
	}
	return tss.SortPartyIDs(un), by
}

type node struct {
	party tss.Party
	view  map[string]*tss.PartyID
	out   chan tss.Message
}

// run moves every message as wire bytes until each party has sent on `done`.
func run(nodes map[string]*node, done chan struct{}, errCh chan *tss.Error) {
	for id, n := range nodes {
		go func(id string, n *node) {
			for msg := range n.out {
				wire, routing, err := msg.WireBytes()
				if err != nil {
					errCh <- n.party.WrapError(err)
					return
				}
				targets := []string{}
				if routing.To == nil {
					for other := range nodes {
						if other != id {
							targets = append(targets, other)
						}
					}
				} else {
					for _, p := range routing.To {
						targets = append(targets, p.Id)
					}
				}
				for _, t := range targets {
					dst := nodes[t]
					go func(dst *node) {
						if _, e := dst.party.UpdateFromBytes(wire, dst.view[id], routing.IsBroadcast); e != nil {
							errCh <- e
						}
					}(dst)
				}
			}
		}(id, n)
	}
	for range nodes {
		select {
		case <-done:
		case e := <-errCh:
			must(e)
		}
	}
}

func signOnce(j job, keys map[string]keygen.LocalPartySaveData, msg *big.Int) {
	nodes := map[string]*node{}
	done := make(chan struct{}, len(j.Parties))
	errCh := make(chan *tss.Error, 64)
	nn := nonce("signing")
	for _, p := range j.Parties {
		sorted, by := ids(j.Parties)
		params := tss.NewParameters(tss.S256(), tss.NewPeerContext(sorted), by[p.ID], len(sorted), len(sorted)-1)
		params.SetSessionNonce(nn)
		out := make(chan tss.Message, 1024)
		end := make(chan *common.SignatureData, 1)
		// a fresh copy of the key per session, as the binding does
		raw, _ := json.Marshal(keys[p.ID])
		var k keygen.LocalPartySaveData
		must(json.Unmarshal(raw, &k))
		n := &node{party: signing.NewLocalParty(msg, params, k, out, end, 32), view: by, out: out}
		nodes[p.ID] = n
		go func() { <-end; done <- struct{}{} }()
	}
	for _, n := range nodes {
		go func(n *node) {
			if e := n.party.Start(); e != nil {
				errCh <- e
			}
		}(n)
	}
	run(nodes, done, errCh)
}

func keygenOnce(j job, pps map[string]*keygen.LocalPreParams) {
	nodes := map[string]*node{}
	done := make(chan struct{}, len(j.Parties))
	errCh := make(chan *tss.Error, 64)
	nn := nonce("keygen")
	for _, p := range j.Parties {
		sorted, by := ids(j.Parties)
		params := tss.NewParameters(tss.S256(), tss.NewPeerContext(sorted), by[p.ID], len(sorted), j.Threshold)
		params.SetSessionNonce(nn)
		out := make(chan tss.Message, 1024)
		end := make(chan *keygen.LocalPartySaveData, 1)
		n := &node{party: keygen.NewLocalParty(params, out, end, *pps[p.ID]), view: by, out: out}
		nodes[p.ID] = n
		go func() { <-end; done <- struct{}{} }()
	}
	for _, n := range nodes {
		go func(n *node) {
			if e := n.party.Start(); e != nil {
				errCh <- e
			}
		}(n)
	}
	run(nodes, done, errCh)
}

func main() {
	_ = golog.SetLogLevel("tss-lib", "error")
	var j job
	must(json.NewDecoder(os.Stdin).Decode(&j))
	switch j.Kind {
	case "sign":
		keys := map[string]keygen.LocalPartySaveData{}
		for id, path := range j.Keys {
			raw, err := os.ReadFile(path)
			must(err)
			var k keygen.LocalPartySaveData
			must(json.Unmarshal(raw, &k))
			keys[id] = k
		}
		d, err := hex.DecodeString(j.Digest)
		must(err)
		msg := new(big.Int).SetBytes(d)
		for i := 0; i < j.Count; i++ {
			t := time.Now()
			signOnce(j, keys, msg)
			fmt.Printf("{\"ms\": %.3f}\n", float64(time.Since(t).Microseconds())/1000)
		}
	case "keygen":
		pps := map[string]*keygen.LocalPreParams{}
		for id, path := range j.PreParams {
			raw, err := os.ReadFile(path)
			must(err)
			pp := new(keygen.LocalPreParams)
			must(json.Unmarshal(raw, pp))
			pps[id] = pp
		}
		for i := 0; i < j.Count; i++ {
			t := time.Now()
			keygenOnce(j, pps)
			fmt.Printf("{\"ms\": %.3f}\n", float64(time.Since(t).Microseconds())/1000)
		}
	default:
		must(fmt.Errorf("unknown kind %q", j.Kind))
	}
}
