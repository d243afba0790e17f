// std::visit with a set of lambdas: overloaded{[](A&){...}, [](B&){...}}.
#pragma once

namespace tlsrelay {

template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

}  // namespace tlsrelay
