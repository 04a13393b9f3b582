//! A pool's places (`Munition.Pool`): how many of its calls may run at once,
//! and the place each running call holds.
//!
//! A place is a value, not a row: `Places::take` counts it taken and hands
//! back the `Place` in one step, and the `Place` gives it back exactly once,
//! when returned or, failing that, when it is dropped. The NIF wraps a
//! `Place` in a resource that lives in its caller's heap, so a caller killed
//! at any point, even between two instructions, gives its place back when
//! its heap is collected: there is no moment at which a place is counted
//! but held by no one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A pool's places: `size` of them, `in_use` taken.
#[derive(Debug)]
pub struct Places {
    size: u64,
    in_use: AtomicU64,
}

impl Places {
    /// `size` places, none taken.
    pub fn new(size: u64) -> Arc<Self> {
        Arc::new(Places {
            size,
            in_use: AtomicU64::new(0),
        })
    }

    /// How many places there are.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many places are taken now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// A place, or `None` when all `size` are taken. A refused take leaves
    /// the count as it was (it never counts a place it then gives back, so
    /// two callers racing for the last place cannot both be refused).
    pub fn take(self: &Arc<Self>) -> Option<Place> {
        self.in_use
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.size).then_some(n + 1)
            })
            .ok()
            .map(|_| Place {
                places: Arc::clone(self),
                returned: AtomicBool::new(false),
            })
    }
}

/// One taken place of a `Places`. Given back once: by `give_back`, or by
/// its destructor if it never was.
#[derive(Debug)]
pub struct Place {
    places: Arc<Places>,
    returned: AtomicBool,
}

impl Place {
    /// Gives the place back; `false` if it was already given back.
    /// Safe from several threads at once: one of them gives it back.
    pub fn give_back(&self) -> bool {
        let first = !self.returned.swap(true, Ordering::AcqRel);
        if first {
            self.places.in_use.fetch_sub(1, Ordering::Release);
        }
        first
    }

    /// The places this one was taken from.
    pub fn places(&self) -> &Arc<Places> {
        &self.places
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn takes_up_to_size_then_refuses_without_counting() {
        let places = Places::new(2);
        let a = places.take().expect("first place");
        let b = places.take().expect("second place");
        assert_eq!(places.in_use(), 2);
        assert!(places.take().is_none());
        assert_eq!(places.in_use(), 2, "a refused take counts nothing");
        drop((a, b));
        assert_eq!(places.in_use(), 0);
    }

    #[test]
    fn a_place_is_given_back_exactly_once() {
        let places = Places::new(1);
        let place = places.take().expect("a place");
        assert!(place.give_back());
        assert_eq!(places.in_use(), 0);
        assert!(!place.give_back(), "a second return gives nothing back");
        let other = places.take().expect("the place again");
        // The first place's destructor must not give back the second's.
        drop(place);
        assert_eq!(places.in_use(), 1);
        drop(other);
        assert_eq!(places.in_use(), 0);
    }

    #[test]
    fn a_place_never_returned_is_given_back_by_its_destructor() {
        let places = Places::new(3);
        let taken: Vec<Place> = (0..3).filter_map(|_| places.take()).collect();
        assert_eq!(places.in_use(), 3);
        drop(taken);
        assert_eq!(places.in_use(), 0);
        assert_eq!(places.size(), 3);
    }

    #[test]
    fn a_place_outlives_nothing_it_needs() {
        // The places live as long as a place taken from them.
        let places = Places::new(1);
        let place = places.take().expect("a place");
        let weak = Arc::downgrade(&places);
        drop(places);
        assert_eq!(place.places().in_use(), 1);
        drop(place);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn racing_threads_never_hold_more_than_size_and_give_everything_back() {
        let places = Places::new(4);
        let holding = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let places = Arc::clone(&places);
                let holding = Arc::clone(&holding);
                thread::spawn(move || {
                    for i in 0..20_000 {
                        if let Some(place) = places.take() {
                            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 4, "{now} places held of 4");
                            holding.fetch_sub(1, Ordering::SeqCst);
                            // Half returned, half left to the destructor,
                            // and some returned twice.
                            if (i + n) % 2 == 0 {
                                place.give_back();
                            }
                            if i % 7 == 0 {
                                place.give_back();
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a racing thread");
        }
        assert_eq!(places.in_use(), 0);
    }
}
