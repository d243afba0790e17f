// Linked into the relay only in the ThreadSanitizer build (TLSRELAY_TSAN).
//
// CAF 0.17.6 comes from Debian, built without TSan: its mailbox (a lock-free
// list) and its reference counts synchronise with atomics inside
// libcaf_core.so, which TSan cannot see. Without help, every message read by
// its receiver and every object freed by the thread that dropped the last
// reference looks like a race with the thread that wrote it (hundreds of
// reports per relay run, most of them entirely in our code's frames, so no
// suppression could tell them from real races).
//
// These definitions interpose the libcaf_core functions where that
// synchronisation happens (the executable's definition wins over the shared
// library's, also for libcaf_core's own calls through its PLT and vtables),
// tell TSan what the atomics guarantee, and call the original:
//  * enqueue releases the mailbox element, consume acquires it: what the
//    sender wrote happens before the receiver's handler, as CAF guarantees;
//    consume also acquires the actor before a message and releases it after,
//    so handlers of one actor are ordered whichever worker runs them;
//    enqueue also releases the actor, and cleanup (which destroys what is
//    left in the mailbox of a terminating actor) acquires it; activate (an
//    actor's initialisation, run by resume before any message) acquires and
//    releases it like consume;
//  * the same for blocking actors (a scoped_actor waiting for a reply, as
//    a reload does on the main thread and the admin endpoint does on its
//    thread): enqueue releases the element, and both ways a blocking actor
//    takes one acquire it: dequeue, and the mailbox visitor through which
//    receive() and request(...).receive(...) read their elements;
//  * dropping a reference releases, and acquires what earlier droppers
//    released, so the thread that frees an object has seen every use of it.
// Nothing is suppressed here: a race in our own code is still reported.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include <caf/actor_control_block.hpp>
#include <caf/blocking_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/ref_counted.hpp>
#include <caf/scheduled_actor.hpp>

extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);

namespace {

// The original definition in libcaf_core (the next object after ours).
template <class Fn>
Fn original(const char* mangled_name) {
  void* f = ::dlsym(RTLD_NEXT, mangled_name);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_caf_sync: %s not found in libcaf_core: %s\n", mangled_name,
                 ::dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(f);
}

void* addr(const void* p) { return const_cast<void*>(p); }

}  // namespace

namespace caf {

void scheduled_actor::enqueue(mailbox_element_ptr ptr, execution_unit* eu) {
  using fn = void (*)(scheduled_actor*, mailbox_element_ptr, execution_unit*);
  static const fn next =
    original<fn>("_ZN3caf15scheduled_actor7enqueueESt10unique_ptrINS_15mailbox_elementENS_"
                 "6detail8disposerEEPNS_14execution_unitE");
  if (ptr) __tsan_release(ptr.get());
  __tsan_release(this);
  next(this, std::move(ptr), eu);
}

bool scheduled_actor::cleanup(error&& fail_state, execution_unit* host) {
  using fn = bool (*)(scheduled_actor*, error&&, execution_unit*);
  static const fn next =
    original<fn>("_ZN3caf15scheduled_actor7cleanupEONS_5errorEPNS_14execution_unitE");
  __tsan_acquire(this);
  return next(this, std::move(fail_state), host);
}

// resume() calls activate() (through its PLT) before it reads the mailbox; the
// first time, activate runs the actor's initialisation (make_behavior: the
// behavior and state its handlers use). A resume may end without consuming a
// message, so consume's release does not cover what activate wrote: without
// this, the first handler on another worker races with the set-up (seen once
// in a CI run: a control_session's awaiting_hello behavior, built on one
// worker, read on the other).
bool scheduled_actor::activate(execution_unit* ctx) {
  using fn = bool (*)(scheduled_actor*, execution_unit*);
  static const fn next = original<fn>("_ZN3caf15scheduled_actor8activateEPNS_14execution_unitE");
  __tsan_acquire(this);
  const auto result = next(this, ctx);
  __tsan_release(this);
  return result;
}

invoke_message_result scheduled_actor::consume(mailbox_element& x) {
  using fn = invoke_message_result (*)(scheduled_actor*, mailbox_element&);
  static const fn next = original<fn>("_ZN3caf15scheduled_actor7consumeERNS_15mailbox_elementE");
  __tsan_acquire(&x);
  // An actor moves between worker threads: what one handler wrote (its
  // state, the behavior it set up) happens before the next handler runs,
  // wherever that is. CAF hands the actor over through its own atomics; this
  // says so (release after each message, acquire before the next).
  __tsan_acquire(this);
  const auto result = next(this, x);
  __tsan_release(this);
  return result;
}

void blocking_actor::enqueue(mailbox_element_ptr ptr, execution_unit* eu) {
  using fn = void (*)(blocking_actor*, mailbox_element_ptr, execution_unit*);
  static const fn next =
    original<fn>("_ZN3caf14blocking_actor7enqueueESt10unique_ptrINS_15mailbox_elementENS_"
                 "6detail8disposerEEPNS_14execution_unitE");
  if (ptr) __tsan_release(ptr.get());
  next(this, std::move(ptr), eu);
}

mailbox_element_ptr blocking_actor::dequeue() {
  using fn = mailbox_element_ptr (*)(blocking_actor*);
  static const fn next = original<fn>("_ZN3caf14blocking_actor7dequeueEv");
  auto ptr = next(this);
  if (ptr) __tsan_acquire(ptr.get());
  return ptr;
}

// receive() and request(...).receive(...) (blocking_actor::receive_impl)
// never call dequeue(): they wait in await_data and hand each element to this
// visitor from inside the mailbox's new_round, which libcaf_core calls through
// its PLT (not inlined), so it is interposed like consume. Acquiring the
// element pairs with the release in enqueue: the reply's content (e.g. the
// pool_manager's relay_report for the admin endpoint) happens before the
// handler reads it. Unlike consume, the actor itself needs no acquire: a
// blocking actor's handlers all run on its one thread.
intrusive::task_result blocking_actor::mailbox_visitor::operator()(mailbox_element& x) {
  using fn = intrusive::task_result (*)(blocking_actor::mailbox_visitor*, mailbox_element&);
  static const fn next =
    original<fn>("_ZN3caf14blocking_actor15mailbox_visitorclERNS_15mailbox_elementE");
  __tsan_acquire(&x);
  return next(this, x);
}

void intrusive_ptr_release(actor_control_block* x) {
  using fn = void (*)(actor_control_block*);
  static const fn next = original<fn>("_ZN3caf21intrusive_ptr_releaseEPNS_19actor_control_blockE");
  __tsan_release(x);
  __tsan_acquire(x);
  next(x);
}

void intrusive_ptr_release_weak(actor_control_block* x) {
  using fn = void (*)(actor_control_block*);
  static const fn next =
    original<fn>("_ZN3caf26intrusive_ptr_release_weakEPNS_19actor_control_blockE");
  __tsan_release(x);
  __tsan_acquire(x);
  next(x);
}

void ref_counted::deref() const noexcept {
  using fn = void (*)(const ref_counted*);
  static const fn next = original<fn>("_ZNK3caf11ref_counted5derefEv");
  __tsan_release(addr(this));
  __tsan_acquire(addr(this));
  next(this);
}

}  // namespace caf
