package main

// The three ECDSA protocols of tss-lib behind one session type. Each constructor gets a JSON
// configuration (bytes in) and builds fresh *tss.PartyID objects for this session only:
// tss.SortPartyIDs mutates them, and tss-lib needs the receiver's own object for a sender.

import (
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/bnb-chain/tss-lib/v3/common"
	"github.com/bnb-chain/tss-lib/v3/crypto/ckd"
	"github.com/bnb-chain/tss-lib/v3/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v3/ecdsa/resharing"
	"github.com/bnb-chain/tss-lib/v3/ecdsa/signing"
	"github.com/bnb-chain/tss-lib/v3/tss"
)

type keygenConf struct {
	Self      string          `json:"self"`
	Parties   []partyConf     `json:"parties"`
	Threshold int             `json:"threshold"`
	PreParams json.RawMessage `json:"preparams"`
	SessionID string          `json:"session_id"` // hex
	EventMax  int             `json:"event_max"`
}

type signConf struct {
	Self      string          `json:"self"`
	Signers   []partyConf     `json:"signers"`
	Key       json.RawMessage `json:"key"`
	Digest    string          `json:"digest"` // hex, 32 bytes
	Path      []uint32        `json:"path"`
	ChainCode string          `json:"chain_code"` // hex, 32 bytes; needed when Path is set
	SessionID string          `json:"session_id"`
	EventMax  int             `json:"event_max"`
}

type reshareConf struct {
	Self         string          `json:"self"`
	Old          []partyConf     `json:"old"`
	New          []partyConf     `json:"new"`
	OldThreshold int             `json:"old_threshold"`
	NewThreshold int             `json:"new_threshold"`
	Key          json.RawMessage `json:"key"`       // old committee members only
	PreParams    json.RawMessage `json:"preparams"` // new committee members only
	SessionID    string          `json:"session_id"`
	EventMax     int             `json:"event_max"`
}

func parsePreParams(raw json.RawMessage) (*keygen.LocalPreParams, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("pre-parameters are required")
	}
	pp := new(keygen.LocalPreParams)
	if err := json.Unmarshal(raw, pp); err != nil {
		return nil, fmt.Errorf("pre-parameters do not parse: %v", err)
	}
	if !pp.ValidateWithProof() {
		return nil, errors.New("pre-parameters are incomplete (made by an older tss-lib?)")
	}
	return pp, nil
}

// parseKey re-parses the share for every session: tss-lib adjusts BigXj in place for HD
// signing and resharing takes a subset, so no session may share key data with another.
func parseKey(raw json.RawMessage) (*keygen.LocalPartySaveData, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("key share is required")
	}
	k := new(keygen.LocalPartySaveData)
	if err := json.Unmarshal(raw, k); err != nil {
		return nil, fmt.Errorf("key share does not parse: %v", err)
	}
	if k.Xi == nil || k.ShareID == nil || k.ECDSAPub == nil || len(k.Ks) == 0 || len(k.BigXj) != len(k.Ks) {
		return nil, errors.New("key share is incomplete")
	}
	return k, nil
}

func sessionBytes(h string) ([]byte, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) < 16 {
		return nil, errors.New("session id must be at least 16 bytes (hex)")
	}
	return b, nil
}

func newKeygen(cfg []byte) (*session, error) {
	var c keygenConf
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, fmt.Errorf("keygen configuration does not parse: %v", err)
	}
	sid, err := sessionBytes(c.SessionID)
	if err != nil {
		return nil, err
	}
	sorted, byID, err := sortedIDs(c.Parties)
	if err != nil {
		return nil, err
	}
	self, ok := byID[c.Self]
	if !ok {
		return nil, fmt.Errorf("self %q is not among the parties", c.Self)
	}
	if c.Threshold < 1 || c.Threshold >= len(sorted) {
		return nil, fmt.Errorf("threshold %d out of range for %d parties (1..n-1)", c.Threshold, len(sorted))
	}
	pp, err := parsePreParams(c.PreParams)
	if err != nil {
		return nil, err
	}
	params := tss.NewParameters(tss.S256(), tss.NewPeerContext(sorted), self, len(sorted), c.Threshold)
	params.SetSessionNonce(sessionNonce(kindKeygen, sid))
	s := newSession(kindKeygen, c.Self, byID, c.EventMax)
	out := make(chan tss.Message, c.EventMax)
	end := make(chan *keygen.LocalPartySaveData, 1)
	s.party = keygen.NewLocalParty(params, out, end, *pp)
	go drain(s, out, end, keygenDone)
	return s, nil
}

// childDelta derives (non-hardened BIP32) the child public key for path and tss-lib's key
// derivation delta, from the group public key and the chain code agreed at keygen.
func childDelta(key *keygen.LocalPartySaveData, chainCode []byte, path []uint32) (*big.Int, *ckd.ExtendedKey, error) {
	ec := tss.S256()
	for _, i := range path {
		if i >= ckd.HardenedKeyStart {
			return nil, nil, fmt.Errorf("hardened index %d cannot be derived from a public key", i)
		}
	}
	parent := &ckd.ExtendedKey{
		PublicKey:  ecdsa.PublicKey{Curve: ec, X: key.ECDSAPub.X(), Y: key.ECDSAPub.Y()},
		Depth:      0,
		ChildIndex: 0,
		ChainCode:  chainCode,
		ParentFP:   []byte{0, 0, 0, 0},
		Version:    []byte{0x04, 0x88, 0xb2, 0x1e}, // xpub; not part of the derivation
	}
	return ckd.DeriveChildKeyFromHierarchy(path, parent, ec.Params().N, ec)
}

func newSigning(cfg []byte) (*session, error) {
	var c signConf
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, fmt.Errorf("signing configuration does not parse: %v", err)
	}
	sid, err := sessionBytes(c.SessionID)
	if err != nil {
		return nil, err
	}
	digest, err := hex.DecodeString(c.Digest)
	if err != nil || len(digest) != 32 {
		return nil, errors.New("digest must be 32 bytes")
	}
	msg := new(big.Int).SetBytes(digest)
	if msg.Cmp(tss.S256().Params().N) >= 0 {
		return nil, errors.New("digest must be below the curve order")
	}
	sorted, byID, err := sortedIDs(c.Signers)
	if err != nil {
		return nil, err
	}
	self, ok := byID[c.Self]
	if !ok {
		return nil, fmt.Errorf("self %q is not among the signers", c.Self)
	}
	key, err := parseKey(c.Key)
	if err != nil {
		return nil, err
	}
	// tss-lib's save data does not record t; the signers are exactly t+1.
	threshold := len(sorted) - 1
	if threshold < 1 {
		return nil, errors.New("at least two signers are needed")
	}
	// Every signer must hold a share of this key: its sort key must be one of Ks
	// (BuildLocalSaveDataSubset would panic otherwise).
	for _, p := range sorted {
		found := false
		for _, k := range key.Ks {
			if k.Cmp(p.KeyInt()) == 0 {
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("signer %q holds no share of this key", p.Id)
		}
	}
	if key.ShareID.Cmp(self.KeyInt()) != 0 {
		return nil, fmt.Errorf("this share belongs to another party than %q", c.Self)
	}
	var delta *big.Int
	if len(c.Path) > 0 {
		cc, err := hex.DecodeString(c.ChainCode)
		if err != nil || len(cc) != 32 {
			return nil, errors.New("chain code must be 32 bytes")
		}
		d, child, err := childDelta(key, cc, c.Path)
		if err != nil {
			return nil, err
		}
		keys := []keygen.LocalPartySaveData{*key}
		if err := signing.UpdatePublicKeyAndAdjustBigXj(d, keys, &child.PublicKey, tss.S256()); err != nil {
			return nil, err
		}
		key = &keys[0]
		delta = d
	}
	params := tss.NewParameters(tss.S256(), tss.NewPeerContext(sorted), self, len(sorted), threshold)
	params.SetSessionNonce(sessionNonce(kindSigning, sid))
	s := newSession(kindSigning, c.Self, byID, c.EventMax)
	out := make(chan tss.Message, c.EventMax)
	end := make(chan *common.SignatureData, 1)
	s.party = signing.NewLocalPartyWithKDD(msg, params, *key, delta, out, end, 32)
	go drain(s, out, end, signatureDone)
	return s, nil
}

func newResharing(cfg []byte) (*session, error) {
	var c reshareConf
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, fmt.Errorf("resharing configuration does not parse: %v", err)
	}
	sid, err := sessionBytes(c.SessionID)
	if err != nil {
		return nil, err
	}
	oldSorted, oldByID, err := sortedIDs(c.Old)
	if err != nil {
		return nil, fmt.Errorf("old committee: %v", err)
	}
	newSorted, newByID, err := sortedIDs(c.New)
	if err != nil {
		return nil, fmt.Errorf("new committee: %v", err)
	}
	members := map[string]*tss.PartyID{}
	for id, p := range oldByID {
		members[id] = p
	}
	for id, p := range newByID {
		if _, both := oldByID[id]; both {
			// tss-lib has never supported a party in both committees: a peer in both runs
			// two parties with distinct ids.
			return nil, fmt.Errorf("party %q is in both committees; use distinct ids", id)
		}
		for _, o := range oldSorted {
			if o.KeyInt().Cmp(p.KeyInt()) == 0 {
				return nil, fmt.Errorf("party %q has the same key as old party %q", id, o.Id)
			}
		}
		members[id] = p
	}
	if c.OldThreshold < 1 || c.OldThreshold >= len(oldSorted) {
		return nil, fmt.Errorf("old threshold %d needs at least t+1 = %d old parties", c.OldThreshold, c.OldThreshold+1)
	}
	if c.NewThreshold < 1 || c.NewThreshold >= len(newSorted) {
		return nil, fmt.Errorf("new threshold %d out of range for %d new parties", c.NewThreshold, len(newSorted))
	}
	var self *tss.PartyID
	var key keygen.LocalPartySaveData
	if p, ok := oldByID[c.Self]; ok {
		self = p
		k, err := parseKey(c.Key)
		if err != nil {
			return nil, err
		}
		for _, o := range oldSorted {
			found := false
			for _, kk := range k.Ks {
				if kk.Cmp(o.KeyInt()) == 0 {
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("old party %q holds no share of this key", o.Id)
			}
		}
		key = *k
	} else if p, ok := newByID[c.Self]; ok {
		self = p
		pp, err := parsePreParams(c.PreParams)
		if err != nil {
			return nil, err
		}
		key = keygen.NewLocalPartySaveData(len(newSorted))
		key.LocalPreParams = *pp
	} else {
		return nil, fmt.Errorf("self %q is in neither committee", c.Self)
	}
	params := tss.NewReSharingParameters(tss.S256(), tss.NewPeerContext(oldSorted), tss.NewPeerContext(newSorted),
		self, len(oldSorted), c.OldThreshold, len(newSorted), c.NewThreshold)
	params.SetSessionNonce(sessionNonce(kindReshare, sid))
	isNew := params.IsNewCommittee()
	s := newSession(kindReshare, c.Self, members, c.EventMax)
	out := make(chan tss.Message, c.EventMax)
	end := make(chan *keygen.LocalPartySaveData, 1)
	s.party = resharing.NewLocalParty(params, key, out, end)
	go drain(s, out, end, func(save *keygen.LocalPartySaveData) (event, error) {
		if !isNew {
			return event{kind: eventDone, header: map[string]any{"type": "done", "result": "none"}}, nil
		}
		return keygenDone(save)
	})
	return s, nil
}
