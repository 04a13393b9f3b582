defmodule Munition.Host.WASITest do
  use Munition.Host.WASIContract, runtime: Munition.Runtime.Wasmtime
  doctest Munition.Host.WASI
end

defmodule Munition.Host.WASIWasmiTest do
  use Munition.Host.WASIContract, runtime: Munition.Runtime.Wasmi
end
