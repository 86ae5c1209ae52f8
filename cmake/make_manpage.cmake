# Writes a man page (roff) for the framecast executable from its own --help texts, so the page
# never drifts from the program. Usage: cmake -DBIN=path -DOUT=framecast.1 -DVERSION=x -P this
execute_process(COMMAND ${BIN} --help OUTPUT_VARIABLE top RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${BIN} --help failed")
endif()
function(roff_escape in out)
    string(REPLACE "\\" "\\\\" s "${in}")
    string(REGEX REPLACE "\n\\." "\n\\\\&." s "${s}")
    string(REGEX REPLACE "\n'" "\n\\\\&'" s "${s}")
    set(${out} "${s}" PARENT_SCOPE)
endfunction()
# The subcommand names: lines "  name   description" after "Subcommands:".
string(REGEX REPLACE ".*\nSubcommands:\n" "" subs "${top}")
string(REGEX MATCHALL "\n?  [a-z-]+ " names "\n${subs}")
roff_escape("${top}" top_roff)
string(TIMESTAMP today "%Y-%m-%d" UTC)
set(page ".TH FRAMECAST 1 \"${today}\" \"framecast ${VERSION}\" \"User Commands\"
.SH NAME
framecast \\- discrete messages over TCP with a fixed-length length header
.SH SYNOPSIS
.B framecast
[\\fIOPTIONS\\fR] \\fISUBCOMMAND\\fR [\\fIOPTIONS\\fR]
.SH DESCRIPTION
.nf
${top_roff}
.fi
")
foreach(n IN LISTS names)
    string(STRIP "${n}" n)
    execute_process(COMMAND ${BIN} ${n} --help OUTPUT_VARIABLE help)
    roff_escape("${help}" help_roff)
    string(APPEND page ".SH \"FRAMECAST ${n}\"\n.nf\n${help_roff}\n.fi\n")
endforeach()
string(APPEND page ".SH FILES
.TP
.I /etc/framecast/framecast.toml
Options for the systemd service (\\fBframecast.service\\fR), one TOML section per subcommand.
.SH SEE ALSO
The README of the framecast project.
")
file(WRITE ${OUT} "${page}")
