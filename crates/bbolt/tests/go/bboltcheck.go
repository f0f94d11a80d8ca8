// Test-only helper: go.etcd.io/bbolt's view of a file, to cross-check rampart-bbolt.
//
//	bboltcheck dump FILE    Tx.Check, then every bucket and key/value in order (hex)
//	bboltcheck make FILE    a file with nested, inline and large buckets and overflow values
//	bboltcheck modify FILE  opens read-write, adds and deletes keys in every bucket, commits
package main

import (
	"fmt"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"
)

func dumpBucket(b *bolt.Bucket, depth int) {
	_ = b.ForEach(func(k, v []byte) error {
		if child := b.Bucket(k); child != nil {
			fmt.Printf("%sbucket %x\n", strings.Repeat(" ", depth), k)
			dumpBucket(child, depth+1)
			return nil
		}
		fmt.Printf("%skv %x %x\n", strings.Repeat(" ", depth), k, v)
		return nil
	})
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bboltcheck:", err)
	os.Exit(1)
}

func main() {
	mode, path := os.Args[1], os.Args[2]
	switch mode {
	case "dump":
		db, err := bolt.Open(path, 0400, &bolt.Options{ReadOnly: true})
		if err != nil {
			fail(err)
		}
		defer db.Close()
		err = db.View(func(tx *bolt.Tx) error {
			for e := range tx.Check() {
				return e
			}
			fmt.Printf("size %d\n", tx.Size())
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				fmt.Printf("bucket %x\n", name)
				dumpBucket(b, 1)
				return nil
			})
		})
		if err != nil {
			fail(err)
		}
	case "make":
		db, err := bolt.Open(path, 0600, nil)
		if err != nil {
			fail(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			small, _ := tx.CreateBucket([]byte("small"))
			_ = small.Put([]byte("a"), []byte("1"))
			_ = small.Put([]byte("b"), []byte{})
			_, _ = tx.CreateBucket([]byte("empty"))
			big, _ := tx.CreateBucket([]byte("big"))
			for i := 0; i < 3000; i++ {
				_ = big.Put([]byte(fmt.Sprintf("key%06d", i)), []byte(strings.Repeat("v", i%200)))
			}
			_ = big.Put([]byte("overflow"), []byte(strings.Repeat("x", 20000)))
			nested, _ := big.CreateBucket([]byte("nested"))
			_ = nested.Put([]byte("n1"), []byte("inline child"))
			deep, _ := nested.CreateBucket([]byte("deep"))
			for i := 0; i < 500; i++ {
				_ = deep.Put([]byte(fmt.Sprintf("d%04d", i)), []byte(strings.Repeat("d", 50)))
			}
			return nil
		})
		if err == nil {
			// Deletions leave free pages behind, as in a real etcd file.
			err = db.Update(func(tx *bolt.Tx) error {
				big := tx.Bucket([]byte("big"))
				for i := 0; i < 3000; i += 3 {
					_ = big.Delete([]byte(fmt.Sprintf("key%06d", i)))
				}
				return nil
			})
		}
		if err != nil {
			fail(err)
		}
		if err := db.Close(); err != nil {
			fail(err)
		}
	case "modify":
		db, err := bolt.Open(path, 0600, nil)
		if err != nil {
			fail(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				c := b.Cursor()
				if k, _ := c.First(); k != nil {
					if err := b.Delete(k); err != nil {
						return err
					}
				}
				for i := 0; i < 200; i++ {
					if err := b.Put([]byte(fmt.Sprintf("zz-added-%03d", i)), []byte(strings.Repeat("z", 100))); err != nil {
						return err
					}
				}
				return nil
			})
		})
		if err != nil {
			fail(err)
		}
		if err := db.Close(); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown mode %q", mode))
	}
}
