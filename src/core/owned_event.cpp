// OwnedEvent: an event that owns its strings (read back from a file, received over the network).

#include <string>
#include <utility>

#include "stagelog/event.hpp"

namespace stagelog {

OwnedEvent::OwnedEvent(const Event& event)
    : ts_ns(event.ts_ns),
      kind(event.kind),
      level(event.level),
      status(event.status),
      run(event.run),
      worker(event.worker),
      component(event.component),
      stage(event.stage),
      message(event.message),
      elapsed_ns(event.elapsed_ns),
      pid(event.pid),
      host(event.host),
      fields_in_message(event.fields_in_message) {
  fields_.reserve(event.fields.size());
  for (const Field& f : event.fields) add_field(f.key, f.value);
}

// The fields' views point into other.strings_: copy through a view so they point into ours.
OwnedEvent::OwnedEvent(const OwnedEvent& other) : OwnedEvent(other.view()) {}

OwnedEvent& OwnedEvent::operator=(const OwnedEvent& other) {
  if (this != &other) *this = OwnedEvent(other);
  return *this;
}

void OwnedEvent::add_field(std::string_view key, FieldValue value) {
  // emplace_front on a list leaves the other elements (and the views into them) in place.
  std::string_view owned_key = strings_.emplace_front(key);
  if (const auto* s = std::get_if<std::string_view>(&value)) {
    value = std::string_view(strings_.emplace_front(*s));
  }
  fields_.push_back(Field{owned_key, value});
}

const FieldValue* OwnedEvent::field(std::string_view key) const noexcept {
  for (const Field& f : fields_) {
    if (f.key == key) return &f.value;
  }
  return nullptr;
}

Event OwnedEvent::view() const noexcept {
  Event e;
  e.ts_ns = ts_ns;
  e.kind = kind;
  e.level = level;
  e.status = status;
  e.run = run;
  e.worker = worker;
  e.component = component;
  e.stage = stage;
  e.message = message;
  e.elapsed_ns = elapsed_ns;
  e.fields = fields_;
  e.pid = pid;
  e.host = host;
  e.fields_in_message = fields_in_message;
  return e;
}

}  // namespace stagelog
