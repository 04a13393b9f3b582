//! A pool's places as NIFs (`Munition.Pool`), over `munition_core::place`:
//! the places as a resource the pool publishes, and each taken place as a
//! resource (a "place token") that lives in its caller's heap.
//!
//! Taking a place is one NIF call that counts the place and makes the token
//! that will give it back, so no kill can fall between the two; the token's
//! destructor gives the place back if the caller never did (a killed
//! caller's heap is freed, and its token with it). Every one is short and
//! runs on a normal scheduler; taking and returning are on the path of every
//! pooled call, so they answer bare values, as the meter's NIFs do, and the
//! pool never hands a token out.

use munition_core::place::{Place, Places};
use rustler::{Atom, Encoder, Env, Resource, ResourceArc, Term};
use std::sync::Arc;

use crate::atoms;

/// A pool's places. The pool keeps it in its published struct.
pub struct PlacesRef(Arc<Places>);

#[rustler::resource_impl]
impl Resource for PlacesRef {}

/// One taken place: given back by `pool_place_return/1`, or by its
/// destructor (`Place`'s `Drop`) when its last reference goes.
pub struct PlaceRef(Place);

#[rustler::resource_impl]
impl Resource for PlaceRef {}

/// `size` places, none taken.
#[rustler::nif]
fn pool_places_new(size: u64) -> ResourceArc<PlacesRef> {
    ResourceArc::new(PlacesRef(Places::new(size)))
}

/// A place token, or `:full` when every place is taken.
#[rustler::nif]
fn pool_place_take<'a>(env: Env<'a>, places: &PlacesRef) -> Term<'a> {
    match places.0.take() {
        Some(place) => ResourceArc::new(PlaceRef(place)).encode(env),
        None => atoms::full().encode(env),
    }
}

/// Gives the token's place back: `:ok`, or `:released` if it already was
/// (returning a token twice gives back one place).
#[rustler::nif]
fn pool_place_return(place: &PlaceRef) -> Atom {
    if place.0.give_back() {
        atoms::ok()
    } else {
        atoms::released()
    }
}

/// How many places are taken now.
#[rustler::nif]
fn pool_places_in_use(places: &PlacesRef) -> u64 {
    places.0.in_use()
}
